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

NUTS runs several chains started from jittered maximum-likelihood values, and reports split R-hat,
bulk effective sample size and divergences, warning when they are bad.
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


def _numpyro_model(loss, train_examples, chance, n_eval, correct, *, spec: LawSpec, names: tuple, bounds: dict, margin: float):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    priors = {
        "E0": lambda: dist.Uniform(*bounds["E0"]),
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
    chain_method: str = "auto",
) -> PosteriorFit:
    """Sample the posterior of the law's parameters given the sweep.

    chain_method: numpyro's ``sequential``, ``vectorized`` or ``parallel``; ``auto`` runs chains in
    parallel when there is a device per chain, else vectorised on one device.
    """
    import arviz as az
    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS
    from numpyro.infer.util import unconstrain_fn

    mle = mle or fit_mle(sweep, spec, seed=seed)
    names = parameter_names(spec, sweep.finetuned)
    bounds = parameter_bounds(sweep, spec)
    margin = max(0.5, float(sweep.loss.max() - sweep.loss.min()))
    model_kwargs = dict(spec=spec, names=names, bounds=bounds, margin=margin)
    data = tuple(jnp.asarray(a, dtype=jnp.float32) for a in (sweep.loss, sweep.train_examples, sweep.chance, sweep.n_eval, sweep.correct))

    rng = np.random.default_rng(seed)
    init = []
    for _ in range(chains):
        start = {}
        for name in names:
            low, high = bounds[name]
            # Small jitter: a sharp elbow's likelihood has one mode per gap between checkpoints,
            # so chains start inside the maximum-likelihood gap (E0 within ±0.001 nats).
            if name == "E0":
                value = mle.params[name] + 0.001 * rng.standard_normal()
            elif name in ("amplitude", "concentration", "alpha", "shift"):
                value = mle.params[name] * float(np.exp(0.02 * rng.standard_normal()))
            else:
                value = mle.params[name] + 0.01 * (high - low) * rng.standard_normal()
            pad = 1e-4 * (high - low)
            start[name] = jnp.float32(np.clip(value, low + pad, high - pad))
        init.append(unconstrain_fn(_numpyro_model, data, model_kwargs, start))
    init_params = jax.tree.map(lambda *xs: jnp.stack(xs), *init)

    if chain_method == "auto":
        chain_method = "parallel" if jax.local_device_count() >= chains else "vectorized"
    mcmc = MCMC(
        NUTS(_numpyro_model, target_accept_prob=0.9, dense_mass=True),
        num_warmup=warmup,
        num_samples=samples,
        num_chains=chains,
        chain_method=chain_method,
        progress_bar=progress,
    )
    mcmc.run(jax.random.PRNGKey(seed), *data, init_params=init_params, extra_fields=("diverging",), **model_kwargs)
    posterior = {name: np.asarray(value, dtype=float) for name, value in mcmc.get_samples(group_by_chain=True).items()}
    divergences = int(np.asarray(mcmc.get_extra_fields(group_by_chain=True)["diverging"]).sum())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = az.from_numpyro(mcmc)
        summary = az.summary(idata, var_names=list(names), kind="diagnostics")
    diagnostics = {
        "r_hat_max": float(summary["r_hat"].max()),
        "ess_min": float(summary["ess_bulk"].min()),
        "divergences": divergences,
        "chains": chains,
        "draws_per_chain": samples,
    }
    problems = diagnostics_problems(diagnostics)
    if problems:
        warnings.warn(f"NUTS diagnostics look bad for the {spec.form} form: " + "; ".join(problems) + ". Treat the posterior with care (more warmup/samples, or another form).", stacklevel=2)
    return PosteriorFit(spec=spec, samples=posterior, mle=mle, diagnostics=diagnostics, idata=idata)


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
