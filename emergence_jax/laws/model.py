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

- E0_std (few-shot emergence loss)        ~ Uniform(−origin/scale, 2): any loss from 0 up to one
  range above the checkpoints. Below them the box does not stop at a margin: when only
  pre-emergence checkpoints are fitted, E0 is an extrapolation below all of them, and the law's
  exponent (through α's prior), not the box, must say how far. A margin of one range truncated
  the demo's posteriors at their lower edge (E0 q05 2.598 at the box's 2.596 on the bundled demo
  sweep, truth 2.577; 2.563 without the margin).
- shift_std (E(D_ref) − E(D0))             ~ HalfNormal(1)
- alpha (law exponent)                     ~ LogNormal(0, 0.75) (log_power); LogNormal(log 0.3, 0.75) (power)
- amplitude_std (accuracy per u)           ~ LogNormal(0, 2)
- jump J (accuracy)                        ~ Uniform(0, 1)
- jump_width_std, temperature_std          ~ LogNormal(log δ, 1.5): the step's width and the elbow's
  softness are fitted, a priori about one checkpoint gap
- floor_shift Δ (accuracy)                 ~ Normal(0, 0.05)
- concentration φ (beta-binomial)          ~ LogNormal(log 300, 1.5)

Sampling parameterisation. With finetuned rows, NUTS does not move along (E0, shift, α) directly:
the data pin the emergence loss at the finetuned amounts, so E0 = E(D0), an extrapolation, lies on a
curved ridge in α (a banana that needed ~120 leapfrog steps per draw and still diverged). The sampler
instead moves along E_ref = E(D_ref) (`E_ref_std`), span = E(D_ref) − E(D_anchor) ≥ 0 (`span_std`, D_anchor the
smallest finetuned amount between D0 and D_ref where the data show emergence) and α, which the data identify nearly independently;
E0 and shift follow exactly, and the priors above are kept: the model adds their log-density at the
implied (E0, shift) plus the log-Jacobian, log 1/(1 − r(α)) with r = (g(D_anchor) − g(D0))/(g(D_ref) − g(D0)).
E_ref's support is E0's prior box shifted by the shift, so E0 never leaves the box. The optimiser
and the prior draws use the plain (E0, shift, α) sites; both share the one observation site.

Observation: correct ~ Binomial(n_eval, p) or BetaBinomial(n_eval, p·φ, (1 − p)·φ), with p the law's
expected accuracy clipped to [1e-6, 1 − 1e-6]. Deterministic sites give the loss-unit values E0,
shift, amplitude (accuracy per loss unit), jump_width and temperature.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from emergence_jax.errors import UserError
from emergence_jax.laws.functions import LawSpec, law_basis, parameter_names, predicted_accuracy
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
    the E0 prior's box in u, from a loss of 0 to one range above the checkpoints. Outliers are
    losses beyond the quartiles ± 3 interquartile ranges.
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
        return cls(origin=origin, scale=scale, gap=gap, e0_low=-origin / scale, e0_high=2.0)

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


def sampling_names(spec: LawSpec, finetuned: bool) -> tuple[str, ...]:
    """The sample sites NUTS moves along: with finetuned rows, (E_ref_std, span_std) replace
    (E0_std, shift_std) (see the module docstring); otherwise the plain sites."""
    names = latent_names(spec, finetuned)
    if not finetuned:
        return names
    return tuple({"E0_std": "E_ref_std", "shift_std": "span_std"}.get(name, name) for name in names)


def anchor_amount(sweep: Sweep, spec: LawSpec) -> float:
    """D_anchor (examples): the smallest finetuning amount strictly between D0 and D_ref at which
    some row is ≥ 3 binomial SE above chance (its emergence loss is then pinned by the data, so the
    span to D_ref is too); the largest such amount when none has emerged; D0 when there is none
    (then r = 0 and span = shift)."""
    inside = (sweep.train_examples > spec.D0) & (sweep.train_examples < spec.D_ref)
    amounts = np.unique(sweep.train_examples[inside])
    if not amounts.size:
        return float(spec.D0)
    se = np.sqrt(sweep.chance * (1 - sweep.chance) / np.maximum(sweep.n_eval, 1))
    emerged = inside & (sweep.accuracy >= sweep.chance + 3 * se)
    return float(np.min(sweep.train_examples[emerged])) if emerged.any() else float(amounts[-1])


def anchor_ratio(alpha, D_anchor, spec: LawSpec, xp=np):
    """r(α) = (g(D_anchor) − g(D0)) / (g(D_ref) − g(D0)) in [0, 1): how far along the law D_anchor sits."""
    g0 = law_basis(spec.D0, alpha, spec.law, xp)
    return (law_basis(D_anchor, alpha, spec.law, xp) - g0) / (law_basis(spec.D_ref, alpha, spec.law, xp) - g0)


def emergence_model(u, train_examples, chance, n_eval, correct, origin, scale, e0_low, e0_high, log_gap, D_anchor, *, spec: LawSpec, names: tuple):
    """The NumPyro model. Data and data-dependent prior settings are arguments, not constants, so
    one compiled sampler or optimiser serves every sweep with the same number of rows. `names` are
    the sample sites: `latent_names` (plain) or `sampling_names` (NUTS's anchored sites)."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import constraints

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
    latent = {name: numpyro.sample(name, priors[name]()) for name in names if name not in ("E_ref_std", "span_std")}
    if "E_ref_std" in names:
        ratio = anchor_ratio(latent["alpha"], D_anchor, spec, jnp)
        span = numpyro.sample("span_std", dist.ImproperUniform(constraints.positive, (), ()))
        shift = span / (1.0 - ratio)
        e_ref = numpyro.sample("E_ref_std", dist.ImproperUniform(constraints.interval(e0_low + shift, e0_high + shift), (), ()))
        latent["E0_std"] = numpyro.deterministic("E0_std", e_ref - shift)
        latent["shift_std"] = numpyro.deterministic("shift_std", shift)
        numpyro.factor("prior_E0_shift", priors["E0_std"]().log_prob(latent["E0_std"]) + priors["shift_std"]().log_prob(shift) - jnp.log1p(-ratio))
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
            numpyro.sample("obs", _beta_binomial_class()(p * phi, (1 - p) * phi, total_count=n_eval), obs=correct)


_STIRLING_SHIFT = 4.0  # the series below are evaluated at x + 4 and carried back by a four-step recurrence


def _rising4_scaled(r):
    """Q(r) = z(z+1)(z+2)(z+3)/z⁴ = 1 + 6r + 11r² + 6r³ at r = 1/z."""
    return 1.0 + r * (6.0 + r * (11.0 + 6.0 * r))


def _rising4_ratio_log(m, rx, rxm):
    """log[x(x+1)(x+2)(x+3)] difference between x + m and x, as 4·log((x + m)/x) plus the log-ratio of
    `_rising4_scaled` at rxm = 1/(x + m) and rx = 1/x (no overflow at large x)."""
    import jax.numpy as jnp

    return 4.0 * jnp.log1p(m * rx) + jnp.log(_rising4_scaled(rxm) / _rising4_scaled(rx))


def _log_rising_excess(x, m):
    """log Γ(x + m) − log Γ(x) − m·log x for x > 0 and counts m ≥ 0, accurate in float32: Stirling's
    series for log Γ(y + m)/Γ(y) at y = x + 4 (three correction terms; error < 4e-8 per term), written
    as (y + m − ½)·log1p(m/y) − m so the large parts cancel analytically, and the four-step recurrence
    back to x. Reciprocals are taken once and shared (divisions dominate XLA:CPU's cost here)."""
    import jax.numpy as jnp

    y = x + _STIRLING_SHIFT
    ry, rym, rx, rxm = 1.0 / y, 1.0 / (y + m), 1.0 / x, 1.0 / (x + m)

    def correction(r):  # 1/(12z) − 1/(360z³) + 1/(1260z⁵) at r = 1/z
        r2 = r * r
        return r * (1.0 / 12.0 - r2 * (1.0 / 360.0 - r2 / 1260.0))

    stirling = (y + m - 0.5) * jnp.log1p(m * ry) - m + correction(rym) - correction(ry)
    return stirling + m * jnp.log1p(_STIRLING_SHIFT * rx) - _rising4_ratio_log(m, rx, rxm)


def _rising_digamma(x, m):
    """ψ(x + m) − ψ(x) for x > 0 and m ≥ 0, accurate in float32 (relative error ~1e-7 against scipy
    in float64): the asymptotic series of ψ(z) − log z at y = x + 4 and y + m, log1p for the
    logarithms' difference, and the recurrence Σ_j<4 1/(x + j) − 1/(x + m + j) written with r = 1/x."""
    import jax.numpy as jnp

    y = x + _STIRLING_SHIFT
    ry, rym = 1.0 / y, 1.0 / (y + m)

    def tail(r):  # ψ(z) − log z ≈ −1/(2z) − 1/(12z²) + 1/(120z⁴) − 1/(252z⁶) at r = 1/z, z ≥ 4
        r2 = r * r
        return -0.5 * r - r2 * (1.0 / 12.0 - r2 * (1.0 / 120.0 - r2 / 252.0))

    def harmonic4(r):  # Σ_j<4 1/(z + j) = P'(z)/P(z) for P(z) = z(z+1)(z+2)(z+3), at r = 1/z
        return r * (4.0 + r * (18.0 + r * (22.0 + 6.0 * r))) / _rising4_scaled(r)

    return jnp.log1p(m * ry) + tail(rym) - tail(ry) + harmonic4(1.0 / x) - harmonic4(1.0 / (x + m))


@functools.cache
def _beta_binomial_kernel():
    """log BetaBinomial(k | n, a, b) without the binomial coefficient, as a `jax.custom_jvp` of (a, b):
    the binomial log-density at p = a/(a + b) from log a and log b plus three rising-factorial
    corrections (`_log_rising_excess`), and the derivatives written out,
    ∂/∂a = ψ(a + k) − ψ(a) − ψ(a + b + n) + ψ(a + b) and likewise for b (`_rising_digamma`).
    Autodiff through the series made XLA:CPU split the backward pass into dozens of small kernels;
    counts k and n are data and have no derivative here."""
    import jax
    import jax.numpy as jnp
    from jax.custom_derivatives import SymbolicZero
    from jax.scipy.special import xlogy

    @jax.custom_jvp
    def kernel(a, b, k, n):
        phi = a + b
        binomial = xlogy(k, a) + xlogy(n - k, b) - n * jnp.log(phi)
        return binomial + _log_rising_excess(a, k) + _log_rising_excess(b, n - k) - _log_rising_excess(phi, n)

    def jvp(primals, tangents):
        a, b, k, n = primals
        da, db, dk, dn = tangents
        if not (isinstance(dk, SymbolicZero) and isinstance(dn, SymbolicZero)):
            raise NotImplementedError("the beta-binomial kernel has no derivative in the counts k and n (they are data)")
        value = kernel(a, b, k, n)
        common = _rising_digamma(a + b, n)
        tangent = jnp.zeros_like(value)
        if not isinstance(da, SymbolicZero):
            tangent = tangent + (_rising_digamma(a, k) - common) * da
        if not isinstance(db, SymbolicZero):
            tangent = tangent + (_rising_digamma(b, n - k) - common) * db
        return value, tangent

    kernel.defjvp(jvp, symbolic_zeros=True)
    return kernel


@functools.cache
def _beta_binomial_class():
    import jax.numpy as jnp
    import numpyro.distributions as dist
    from jax.scipy.special import gammaln

    class FastBetaBinomial(dist.BetaBinomial):
        """numpyro's BetaBinomial with a cheaper, equally exact log_prob (`_beta_binomial_kernel`)
        instead of two `betaln` (each several series evaluated under `where`). Measured as a
        compiled gradient of the model's potential (4 chains × 256 rows, float32, CPU, idle):
        relu 40 µs, softplus 56 µs, jump 63 µs per gradient, against 71 / 162 / 127 µs with
        autodiff through the same series and 676 µs (relu) with numpyro's own; the default
        195-row fit (3 forms × 4 chains × 1000 + 1000 draws) took 16.8–17.8 s wall, 30–32 CPU-s,
        against 32.5–33.9 s, 62–65 CPU-s. Against float64 scipy the error is ≤ 0.004 nats per row
        for φ ≥ 3, n ≤ 2000 (jax's betaln: ≤ 0.013), the gradient's ≤ 1.1e-6 of its terms' size."""

        def log_prob(self, value):
            a, b, n = self.concentration1, self.concentration0, self.total_count
            log_choose = gammaln(n + 1.0) - gammaln(value + 1.0) - gammaln(n - value + 1.0)
            return log_choose + _beta_binomial_kernel()(a, b, value, jnp.asarray(n, a.dtype))

    return FastBetaBinomial


def padded_rows(n_rows: int) -> int:
    """The row count a sweep is padded to (32, 48, 64, 96, 128, ...), so sweeps of nearby sizes
    (backtest variants, ablations, bootstrap) share one compilation."""
    size = 32
    while size < n_rows:
        size = size * 3 // 2 if (size & (size - 1)) == 0 else size * 4 // 3
    return size


def model_args(sweep: Sweep, frame: Frame, D_anchor: float = 1.0) -> tuple:
    """The model's positional arguments for `sweep` (float32 JAX arrays and scalars; `D_anchor`
    from `anchor_amount`, used only by the sampling sites). Rows are
    padded to `padded_rows` with zero-question rows (n_eval = correct = 0), whose log-likelihood
    is exactly 0 under both likelihoods."""
    import jax.numpy as jnp

    pad = padded_rows(sweep.n_rows) - sweep.n_rows
    columns = (frame.to_std(sweep.loss), sweep.train_examples, sweep.chance, sweep.n_eval, sweep.correct)
    fill = (0.0, 0.0, 0.25, 0.0, 0.0)
    arrays = tuple(np.concatenate([np.asarray(c, float), np.full(pad, f)]) for c, f in zip(columns, fill))
    scalars = (frame.origin, frame.scale, frame.e0_low, frame.e0_high, float(np.log(frame.gap)), D_anchor)
    return tuple(jnp.asarray(a, dtype=jnp.float32) for a in arrays) + tuple(jnp.float32(v) for v in scalars)


@functools.lru_cache(maxsize=32)
def bound_model(spec: LawSpec, finetuned: bool, sampling: bool = False):
    """The model with its static settings bound (cached, so jitted callers reuse compilations):
    plain sites, or with `sampling` NUTS's anchored sites."""
    names = sampling_names(spec, finetuned) if sampling else latent_names(spec, finetuned)
    return functools.partial(emergence_model, spec=spec, names=names)


@functools.lru_cache(maxsize=32)
def _sampling_starts_fn(spec: LawSpec, finetuned: bool):
    import jax
    from numpyro.infer.util import constrain_fn, unconstrain_fn

    plain, anchored = bound_model(spec, finetuned), bound_model(spec, finetuned, sampling=True)

    def convert(z, args):
        values = constrain_fn(plain, args, {}, z)
        if finetuned:
            ratio = anchor_ratio(values["alpha"], args[-1], spec, jax.numpy)
            shift = values.pop("shift_std")
            values["span_std"] = shift * (1.0 - ratio)
            values["E_ref_std"] = values.pop("E0_std") + shift
        return unconstrain_fn(anchored, args, {}, values)

    return jax.jit(jax.vmap(convert, in_axes=(0, None)))


def sampling_starts(spec: LawSpec, finetuned: bool, z_plain: dict, args: tuple) -> dict:
    """Unconstrained starts of the plain sites ([k] each) -> the same points in NUTS's sampling sites."""
    return {name: np.asarray(value, np.float32) for name, value in _sampling_starts_fn(spec, finetuned)(z_plain, args).items()}


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
