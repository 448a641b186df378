"""The one emergence-law likelihood, written once as a NumPyro model.

Everything that scores parameters uses this model: NUTS samples it, the maximum-likelihood fit
maximises its observation log-density (`numpyro.infer.log_likelihood`, priors off), PSIS-LOO,
stacking and posterior predictive checks use its pointwise log-likelihoods.

Scale-free. The loss axis is standardised inside the fit by a `Frame` computed from the data's
checkpoint losses: u = (L − origin) / scale, with origin the smallest and scale the spread of the
checkpoint losses that are not far outliers (a step-0 checkpoint at 12 nats does not stretch it).
Every prior is set in u, so losses in nats, bits or ×10 give the same E0 after conversion.

Latent parameters (u units unless unitless) and priors; δ is the median gap between adjacent
checkpoint losses (robust spacing, u units):

- E0_std (few-shot emergence loss)        ~ Uniform(max(−1, −origin/scale), 2): the robust loss range
  with one range of margin either side, never below a loss of 0
- shift_std (E(D_ref) − E(D0))             ~ HalfNormal(1)
- alpha (law exponent)                     ~ LogNormal(0, 0.75) (log_power); LogNormal(log 0.3, 0.75) (power)
- amplitude_std (accuracy per u)           ~ LogNormal(0, 2)
- jump J (accuracy)                        ~ Uniform(0, 1)
- jump_width_std, temperature_std          ~ LogNormal(log δ, 1.5): the step's width and the elbow's
  softness are fitted, a priori about one checkpoint gap
- floor_shift Δ (accuracy)                 ~ Normal(0, 0.05)
- concentration φ (beta-binomial)          ~ LogNormal(log 300, 1.5)

Observation: correct ~ Binomial(n_eval, p) or BetaBinomial(n_eval, p·φ, (1 − p)·φ), with p the law's
expected accuracy clipped to [1e-6, 1 − 1e-6]. Deterministic sites give the loss-unit values E0,
shift, amplitude (accuracy per loss unit), jump_width and temperature.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from emergence_jax.errors import UserError
from emergence_jax.laws.functions import LawSpec, parameter_names, predicted_accuracy
from emergence_jax.laws.sweep import Sweep

PROB_EPS = 1e-6
CONCENTRATION_PRIOR_MEDIAN = 300.0

# loss-unit parameter -> (latent site, power of the scale it carries: loss = origin·[p=0 and E0] + scale^p·latent)
SCALED = {"E0": ("E0_std", 1), "shift": ("shift_std", 1), "amplitude": ("amplitude_std", -1), "jump_width": ("jump_width_std", 1), "temperature": ("temperature_std", 1)}


@dataclasses.dataclass(frozen=True)
class Frame:
    """The standardisation of the loss axis (loss units of the input: nats, bits, ...).

    origin: smallest non-outlying checkpoint loss. scale: spread of the non-outlying checkpoint
    losses (> 0). gap: median gap between adjacent distinct checkpoint losses, in u. e0_low/e0_high:
    the E0 prior's box in u. Outliers are losses beyond the quartiles ± 3 interquartile ranges.
    """

    origin: float
    scale: float
    gap: float
    e0_low: float
    e0_high: float

    @classmethod
    def from_losses(cls, loss: np.ndarray) -> Frame:
        losses = np.unique(np.asarray(loss, float))
        if losses.size < 2:
            raise UserError(f"the rows hold {losses.size} distinct pretraining loss(es); a fit needs checkpoints at 2 or more losses")
        if np.any(losses <= 0):
            raise UserError("pretrain_loss: losses must be positive (a cross-entropy); check the column")
        q1, q3 = np.percentile(losses, [25, 75])
        iqr = q3 - q1
        kept = losses[(losses >= q1 - 3 * iqr) & (losses <= q3 + 3 * iqr)] if iqr > 0 else losses
        if kept.size < 2:
            kept = losses
        origin, scale = float(kept.min()), float(kept.max() - kept.min())
        gap = float(np.median(np.diff(kept))) / scale
        return cls(origin=origin, scale=scale, gap=gap, e0_low=max(-1.0, -origin / scale), e0_high=2.0)

    def to_std(self, loss):
        return (np.asarray(loss, float) - self.origin) / self.scale

    def to_loss(self, u):
        return self.origin + self.scale * np.asarray(u, float)

    def latent_from_params(self, params: dict) -> dict:
        """Loss-unit parameters -> latent sites (the inverse of the model's deterministic sites)."""
        latent = {}
        for name, value in params.items():
            if name in SCALED:
                site, power = SCALED[name]
                value = np.asarray(value, float)
                latent[site] = (value - self.origin) / self.scale if name == "E0" else value / self.scale**power
            else:
                latent[name] = value
        return latent


def latent_names(spec: LawSpec, finetuned: bool) -> tuple[str, ...]:
    """The model's sample sites (standardised where the parameter has loss units)."""
    return tuple(SCALED[name][0] if name in SCALED else name for name in parameter_names(spec, finetuned))


def emergence_model(u, train_examples, chance, n_eval, correct, origin, scale, e0_low, e0_high, log_gap, *, spec: LawSpec, names: tuple):
    """The NumPyro model. Data and data-dependent prior settings are arguments, not constants, so
    one compiled sampler or optimiser serves every sweep with the same number of rows."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    priors = {
        "E0_std": lambda: dist.Uniform(e0_low, e0_high),
        "shift_std": lambda: dist.HalfNormal(1.0),
        "alpha": lambda: dist.LogNormal(0.0 if spec.law == "log_power" else float(np.log(0.3)), 0.75),
        "amplitude_std": lambda: dist.LogNormal(0.0, 2.0),
        "jump": lambda: dist.Uniform(0.0, 1.0),
        "jump_width_std": lambda: dist.LogNormal(log_gap, 1.5),
        "temperature_std": lambda: dist.LogNormal(log_gap, 1.5),
        "floor_shift": lambda: dist.Normal(0.0, 0.05),
        "concentration": lambda: dist.LogNormal(float(np.log(CONCENTRATION_PRIOR_MEDIAN)), 1.5),
    }
    latent = {name: numpyro.sample(name, priors[name]()) for name in names}
    std_params = {("E0" if site == "E0_std" else site.removesuffix("_std")): value for site, value in latent.items()}
    for name, (site, power) in SCALED.items():
        if site in latent:
            numpyro.deterministic(name, origin + scale * latent[site] if name == "E0" else latent[site] * scale**power)
    p = jnp.clip(predicted_accuracy(std_params, u, train_examples, chance, spec, xp=jnp), PROB_EPS, 1 - PROB_EPS)
    with numpyro.plate("rows", u.shape[0]):
        if spec.likelihood == "binomial":
            numpyro.sample("obs", dist.Binomial(total_count=n_eval, probs=p), obs=correct)
        else:
            phi = latent["concentration"]
            numpyro.sample("obs", dist.BetaBinomial(p * phi, (1 - p) * phi, total_count=n_eval), obs=correct)


def padded_rows(n_rows: int) -> int:
    """The row count a sweep is padded to (32, 48, 64, 96, 128, ...), so sweeps of nearby sizes
    (backtest variants, ablations, bootstrap) share one compilation."""
    size = 32
    while size < n_rows:
        size = size * 3 // 2 if (size & (size - 1)) == 0 else size * 4 // 3
    return size


def model_args(sweep: Sweep, frame: Frame) -> tuple:
    """The model's positional arguments for `sweep` (float32 JAX arrays and scalars). Rows are
    padded to `padded_rows` with zero-question rows (n_eval = correct = 0), whose log-likelihood
    is exactly 0 under both likelihoods."""
    import jax.numpy as jnp

    pad = padded_rows(sweep.n_rows) - sweep.n_rows
    columns = (frame.to_std(sweep.loss), sweep.train_examples, sweep.chance, sweep.n_eval, sweep.correct)
    fill = (0.0, 0.0, 0.25, 0.0, 0.0)
    arrays = tuple(np.concatenate([np.asarray(c, float), np.full(pad, f)]) for c, f in zip(columns, fill))
    scalars = (frame.origin, frame.scale, frame.e0_low, frame.e0_high, float(np.log(frame.gap)))
    return tuple(jnp.asarray(a, dtype=jnp.float32) for a in arrays) + tuple(jnp.float32(v) for v in scalars)


@functools.lru_cache(maxsize=32)
def bound_model(spec: LawSpec, finetuned: bool):
    """The model with its static settings bound (cached, so jitted callers reuse compilations)."""
    return functools.partial(emergence_model, spec=spec, names=latent_names(spec, finetuned))


@functools.lru_cache(maxsize=32)
def _pointwise_fn(spec: LawSpec, finetuned: bool):
    import jax
    from numpyro.infer import log_likelihood

    model = bound_model(spec, finetuned)

    def pointwise(latent, args):
        return log_likelihood(model, latent, *args, batch_ndims=1)["obs"]

    return jax.jit(pointwise)


def pointwise_log_likelihood_latent(spec: LawSpec, finetuned: bool, latent: dict, sweep: Sweep, frame: Frame, *, batch: int = 4096) -> np.ndarray:
    """log p(row | draw) in nats for latent draws (name -> [draws]) and every row of `sweep`:
    [draws, rows], from `numpyro.infer.log_likelihood` on the model (normalised, binomial
    coefficient included)."""
    fn = _pointwise_fn(spec, finetuned)
    args = model_args(sweep, frame)
    n = next(iter(latent.values())).shape[0]
    out = []
    for start in range(0, n, batch):
        chunk = {name: np.asarray(value[start : start + batch], np.float32) for name, value in latent.items()}
        out.append(np.asarray(fn(chunk, args), dtype=float)[:, : sweep.n_rows])
    return np.concatenate(out, axis=0)
