"""Bayesian fit of an emergence law with NumPyro NUTS.

Likelihood: each row's correct count k out of n_eval is Binomial(n_eval, p) with p the law's
expected accuracy (clipped to [1e-6, 1 − 1e-6]), or BetaBinomial(n_eval, p·φ, (1 − p)·φ) with a
fitted concentration φ for over-dispersion.

Priors (weakly informative; Lmin, Lmax are the smallest and largest pretraining losses in the data,
m = max(0.5, Lmax − Lmin) nats; the box of each uniform prior is `laws.mle.parameter_bounds`):

- E0 (few-shot emergence loss, nats)     ~ Uniform(Lmin − m, Lmax + m)
- shift (E(D_ref) − E(D0), nats)          ~ HalfNormal(m)
- alpha (law exponent)                    ~ LogNormal(0, 0.75) for log_power; LogNormal(log 0.3, 0.75) for power
- amplitude A (accuracy per nat)          ~ LogNormal(log 2, 1.5)
- jump J (accuracy)                       ~ Uniform(0, 1)
- floor_shift Δ (accuracy)                ~ Normal(0, 0.05)
- concentration φ                         ~ LogNormal(log 300, 1.5)

NUTS runs several chains (vectorised) started from jittered maximum-likelihood values, and reports
split R-hat, bulk effective sample size and divergences, warning when they are bad.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from emergence_jax.laws.functions import LawSpec, parameter_names, predicted_accuracy
from emergence_jax.laws.mle import MLEResult, fit_mle, parameter_bounds
from emergence_jax.laws.sweep import Sweep

R_HAT_WARN = 1.05
ESS_WARN = 100


@dataclasses.dataclass
class PosteriorFit:
    """A NUTS posterior: `samples[name]` has shape [chains, draws]; `idata` is ArviZ InferenceData
    with posterior, log_likelihood (for PSIS-LOO) and observed data."""

    spec: LawSpec
    samples: dict[str, np.ndarray]
    mle: MLEResult
    diagnostics: dict
    idata: object

    def flat(self, name: str) -> np.ndarray:
        return self.samples[name].reshape(-1)

    def draws(self) -> dict[str, np.ndarray]:
        """All parameters, chains pooled: name -> [chains·draws]."""
        return {name: self.flat(name) for name in self.samples}


def _numpyro_model(loss, train_examples, chance, n_eval, correct, E0_low, E0_high, margin, *, spec: LawSpec, names: tuple):
    """The model as a plain function. Data-dependent prior settings (E0's box, the loss margin)
    are arguments, not constants, so one compiled sampler serves every sweep of the same shape."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    priors = {
        "E0": lambda: dist.Uniform(E0_low, E0_high),
        "shift": lambda: dist.HalfNormal(margin),
        "alpha": lambda: dist.LogNormal(0.0 if spec.law == "log_power" else float(np.log(0.3)), 0.75),
        "amplitude": lambda: dist.LogNormal(float(np.log(2.0)), 1.5),
        "jump": lambda: dist.Uniform(0.0, 1.0),
        "floor_shift": lambda: dist.Normal(0.0, 0.05),
        "concentration": lambda: dist.LogNormal(float(np.log(300.0)), 1.5),
    }
    params = {name: numpyro.sample(name, priors[name]()) for name in names}
    p = jnp.clip(predicted_accuracy(params, loss, train_examples, chance, spec, xp=jnp), 1e-6, 1 - 1e-6)
    with numpyro.plate("rows", loss.shape[0]):
        if spec.likelihood == "binomial":
            numpyro.sample("obs", dist.Binomial(total_count=n_eval, probs=p), obs=correct)
        else:
            phi = params["concentration"]
            numpyro.sample("obs", dist.BetaBinomial(p * phi, (1 - p) * phi, total_count=n_eval), obs=correct)


class NUTSSampler:
    """NUTS for one spec, compiled once and reused for every sweep with the same number of rows
    (backtests, ablations and calibration studies fit many such sweeps).

    Built on NumPyro's functional `hmc` kernel: chains are vmapped, and warmup plus sampling run
    as jit-compiled scans of `chunk` iterations, so a progress bar can advance between chunks
    while nothing is recompiled from one sweep to the next.
    """

    def __init__(self, spec: LawSpec, *, finetuned: bool, chains: int = 4, warmup: int = 1000, samples: int = 1000, progress: bool = True, chunk: int = 100):
        import functools

        self.spec, self.chains, self.warmup, self.samples = spec, chains, warmup, samples
        self.names = parameter_names(spec, finetuned)
        self.finetuned = finetuned
        self.progress, self.chunk = progress, chunk
        self._model = functools.partial(_numpyro_model, spec=spec, names=self.names)
        self._compiled = None

    def _compile(self, data: tuple):
        import jax
        from numpyro.infer.hmc import hmc
        from numpyro.infer.util import initialize_model

        _, potential_fn_gen, postprocess_fn_gen, _ = initialize_model(jax.random.PRNGKey(0), self._model, dynamic_args=True, model_args=data)
        init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")

        def init_chain(z, rng_key, data):
            return init_kernel(z, self.warmup, dense_mass=True, target_accept_prob=0.9, model_args=data, rng_key=rng_key)

        def advance(state, data, length):
            def step(state, _):
                state = sample_kernel(state, model_args=data)
                return state, (state.z, state.diverging)

            return jax.lax.scan(step, state, None, length=length)

        constrain = lambda z, data: postprocess_fn_gen(*data)(z)
        self._compiled = (
            jax.jit(jax.vmap(init_chain, in_axes=(0, 0, None))),
            jax.jit(jax.vmap(advance, in_axes=(0, None, None)), static_argnums=2),
            jax.jit(jax.vmap(jax.vmap(constrain, in_axes=(0, None)), in_axes=(0, None))),
        )

    def _init_params(self, data: tuple, mle: MLEResult, bounds: dict, seed: int):
        """Per-chain starts near the MLE, in unconstrained space. Small jitter: a sharp elbow's
        likelihood has one mode per gap between checkpoints, so chains start inside the
        maximum-likelihood gap (E0 within about ±0.001 nats)."""
        import jax
        import jax.numpy as jnp
        from numpyro.infer.util import unconstrain_fn

        rng = np.random.default_rng(seed)
        init = []
        for _ in range(self.chains):
            start = {}
            for name in self.names:
                low, high = bounds[name]
                if name == "E0":
                    value = mle.params[name] + 0.001 * rng.standard_normal()
                elif name in ("amplitude", "concentration", "alpha", "shift"):
                    value = mle.params[name] * float(np.exp(0.02 * rng.standard_normal()))
                else:
                    value = mle.params[name] + 0.01 * (high - low) * rng.standard_normal()
                pad = 1e-4 * (high - low)
                start[name] = jnp.float32(np.clip(value, low + pad, high - pad))
            init.append(unconstrain_fn(self._model, data, {}, start))
        return jax.tree.map(lambda *xs: jnp.stack(xs), *init)

    def run(self, sweep: Sweep, *, seed: int = 0, mle: MLEResult | None = None) -> PosteriorFit:
        """Sample the posterior of the law's parameters given `sweep`."""
        import arviz as az
        import jax
        import jax.numpy as jnp
        from tqdm.auto import tqdm

        from emergence_jax.laws.mle import log_likelihood_rows

        if sweep.finetuned != self.finetuned:
            raise ValueError("this sampler was built for a sweep " + ("with" if self.finetuned else "without") + " finetuned rows")
        mle = mle or fit_mle(sweep, self.spec, seed=seed)
        bounds = parameter_bounds(sweep, self.spec)
        margin = max(0.5, float(sweep.loss.max() - sweep.loss.min()))
        arrays = (sweep.loss, sweep.train_examples, sweep.chance, sweep.n_eval, sweep.correct)
        data = tuple(jnp.asarray(a, dtype=jnp.float32) for a in arrays) + tuple(jnp.float32(v) for v in (*bounds["E0"], margin))
        if self._compiled is None:
            self._compile(data)
        init, advance, constrain = self._compiled

        state = init(self._init_params(data, mle, bounds, seed), jax.random.split(jax.random.PRNGKey(seed), self.chains), data)
        total = self.warmup + self.samples
        kept_z, kept_divergent = [], []
        with tqdm(total=total, desc=f"NUTS {self.spec.form} ({self.chains} chains)", disable=not self.progress, leave=False) as bar:
            done = 0
            while done < total:
                length = min(self.chunk, total - done)
                state, (z, divergent) = advance(state, data, length)
                keep = min(length, max(0, done + length - self.warmup))
                if keep:
                    kept_z.append(jax.tree.map(lambda a: a[:, length - keep :], z))
                    kept_divergent.append(np.asarray(divergent)[:, length - keep :])
                done += length
                bar.update(length)
        z = jax.tree.map(lambda *parts: jnp.concatenate(parts, axis=1), *kept_z)
        constrained = constrain(z, data)
        posterior = {name: np.asarray(constrained[name], dtype=float) for name in self.names}
        divergences = int(np.concatenate(kept_divergent, axis=1).sum())

        flat = {name: value.reshape(-1, 1) for name, value in posterior.items()}
        log_lik = log_likelihood_rows(flat, sweep, self.spec).reshape(self.chains, self.samples, sweep.n_rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = az.from_dict(posterior=posterior, log_likelihood={"obs": log_lik}, observed_data={"obs": sweep.correct}, sample_stats={"diverging": np.concatenate(kept_divergent, axis=1)})
            summary = az.summary(idata, var_names=list(self.names), kind="diagnostics")
        diagnostics = {
            "r_hat_max": float(summary["r_hat"].max()),
            "ess_min": float(summary["ess_bulk"].min()),
            "divergences": divergences,
            "chains": self.chains,
            "draws_per_chain": self.samples,
        }
        problems = diagnostics_problems(diagnostics)
        if problems:
            warnings.warn(f"NUTS diagnostics look bad for the {self.spec.form} form: " + "; ".join(problems) + ". Treat the posterior with care (more warmup/samples, or another form).", stacklevel=2)
        return PosteriorFit(spec=self.spec, samples=posterior, mle=mle, diagnostics=diagnostics, idata=idata)


def fit_posterior(
    sweep: Sweep,
    spec: LawSpec,
    *,
    chains: int = 4,
    warmup: int = 1000,
    samples: int = 1000,
    seed: int = 0,
    progress: bool = True,
    mle: MLEResult | None = None,
) -> PosteriorFit:
    """Sample the posterior of the law's parameters given the sweep (one-off `NUTSSampler`)."""
    sampler = NUTSSampler(spec, finetuned=sweep.finetuned, chains=chains, warmup=warmup, samples=samples, progress=progress)
    return sampler.run(sweep, seed=seed, mle=mle)


def diagnostics_problems(diagnostics: dict) -> list[str]:
    """Human-readable reasons the sampler's output is not trustworthy (empty when fine)."""
    problems = []
    if not diagnostics["r_hat_max"] <= R_HAT_WARN:
        problems.append(f"max R-hat {diagnostics['r_hat_max']:.3f} > {R_HAT_WARN}")
    if not diagnostics["ess_min"] >= ESS_WARN:
        problems.append(f"min bulk ESS {diagnostics['ess_min']:.0f} < {ESS_WARN}")
    if diagnostics["divergences"] > 0:
        problems.append(f"{diagnostics['divergences']} divergent transitions")
    return problems
