"""Bayesian fit of an emergence law: numpyro's NUTS kernel on the one model of `laws.model`
(likelihood, priors and the sampling sites are documented there), in one compiled program per
setting and row count (`_compiled_nuts`; `bench fit` times it beside `numpyro.infer.MCMC`).

Chains run vectorised, start in different gaps between checkpoints (the best gaps of the
maximum-likelihood E0 profile), and one compiled sampler serves every sweep with the same number of
rows (backtests, ablations and calibration studies fit many such sweeps). Split R-hat, bulk ESS and
divergences are reported, with a warning when they are bad.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import numpy as np

from emergence_jax.laws.functions import LawSpec, parameter_names
from emergence_jax.laws.mle import MLEResult, fit_mle
from emergence_jax.laws.model import Frame, anchor_amount, bound_model, latent_names, model_args, pointwise_log_likelihood_latent, sampling_starts
from emergence_jax.laws.sweep import Sweep

R_HAT_WARN = 1.01
ESS_WARN = 100
DIVERGENCE_WARN = 0.005
# Chains start in gaps whose profile log-likelihood is within this of the best (nats).
START_GAP_LOG_LIK = 5.0
MAX_TREE_DEPTH = 8
TARGET_ACCEPT = 0.9
# A form whose draws carry weight and whose divergent share exceeds DIVERGENCE_WARN is sampled again
# at this target acceptance (smaller steps; on the bundled demo sweep 2-4x the leapfrog steps).
RETRY_TARGET_ACCEPT = 0.95


@dataclasses.dataclass
class PosteriorFit:
    """A NUTS posterior of one form. `samples[name]` (loss-unit parameters) and `latent[site]` (the
    model's sample sites) have shape [chains, draws]; `idata` is ArviZ InferenceData with posterior,
    log_likelihood (the model's pointwise values, for PSIS-LOO) and observed data; `frame` is the
    loss standardisation the model used."""

    spec: LawSpec
    samples: dict[str, np.ndarray]
    mle: MLEResult
    diagnostics: dict
    idata: object
    latent: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    frame: Frame | None = None
    finetuned: bool = False

    def flat(self, name: str) -> np.ndarray:
        return self.samples[name].reshape(-1)

    def draws(self) -> dict[str, np.ndarray]:
        """All loss-unit parameters, chains pooled: name -> [chains·draws]."""
        return {name: self.flat(name) for name in self.samples}

    def latent_draws(self) -> dict[str, np.ndarray]:
        return {name: value.reshape(-1) for name, value in self.latent.items()}

    def pointwise_log_likelihood(self, sweep: Sweep) -> np.ndarray:
        """log p(row | draw) for every draw (chains pooled) and row of `sweep` (losses in the fit's
        unit): [draws, rows], from the model via `numpyro.infer.log_likelihood`."""
        return pointwise_log_likelihood_latent(self.spec, self.finetuned, self.latent_draws(), sweep, self.frame)


@functools.lru_cache(maxsize=16)
def _compiled_nuts(spec: LawSpec, finetuned: bool, chains: int, warmup: int, samples: int, target_accept: float = TARGET_ACCEPT):
    """numpyro's NUTS kernel (`numpyro.infer.hmc.hmc`, algo="NUTS": the same kernel, step-size and
    dense mass-matrix adaptation `MCMC(NUTS)` uses) driven by one jitted function: warmup and
    sampling as `lax.scan`s, chains vmapped, the model's data as arguments. `numpyro.infer.MCMC`
    re-traces and re-compiles its init and loop on every `run` (measured: a fixed ~12 s per call on
    the 2-core machine even for 10 iterations); this compiles once per setting and padded row count.
    Returns (sample_fn(keys [chains], z_init {site: [chains]}, args) -> (z, diverging, num_steps)
    each [chains, samples, ...], constrain_fn(z {site: [n]}, args) -> constrained sites and
    deterministic values)."""
    import jax
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import constrain_fn, potential_energy

    model = bound_model(spec, finetuned, sampling=True)

    def potential_fn_gen(*args):
        return lambda z: potential_energy(model, args, {}, z)

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")

    def chain(key, z_init, args):
        state = init_kernel(z_init, warmup, dense_mass=True, target_accept_prob=target_accept, max_tree_depth=MAX_TREE_DEPTH, model_args=args, rng_key=key)

        def step(state, _):
            state = sample_kernel(state, model_args=args)
            return state, (state.z, state.diverging, state.num_steps)

        # one scan over warmup and sampling (the kernel adapts while state.i < warmup): one copy of
        # the NUTS program to compile, not two; the warmup part of the trace is dropped
        _, trace = jax.lax.scan(step, state, None, length=warmup + samples)
        return jax.tree.map(lambda x: x[warmup:], trace)

    sample_fn = jax.jit(jax.vmap(chain, in_axes=(0, 0, None)))
    constrain = jax.jit(jax.vmap(lambda z, args: constrain_fn(model, args, {}, z, return_deterministic=True), in_axes=(0, None)))
    return sample_fn, constrain


_EXECUTABLES: dict = {}


def _executable(spec: LawSpec, finetuned: bool, chains: int, warmup: int, samples: int, target_accept: float, keys, starts, args):
    """The compiled sampler for these settings and argument shapes (traced and compiled once, in the
    calling thread: numpyro's effect handlers are not thread-safe while tracing)."""
    import jax

    key = (spec, finetuned, chains, warmup, samples, target_accept, jax.tree.map(lambda x: (x.shape, str(x.dtype)), (keys, starts, args)).__repr__())
    if key not in _EXECUTABLES:
        sample_fn, _ = _compiled_nuts(spec, finetuned, chains, warmup, samples, target_accept)
        _EXECUTABLES[key] = sample_fn.lower(keys, starts, args).compile()
    return _EXECUTABLES[key]


@functools.cache
def _pool():
    """Threads that run compiled samplers: a sampler is a chain of small operations that keeps one
    core busy, so forms launched together run side by side on the machine's cores."""
    import concurrent.futures
    import os

    return concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(os.sched_getaffinity(0))), thread_name_prefix="nuts")


class NUTSSampler:
    """NUTS for one spec; compiled on the first sweep and reused for every later sweep with the
    same padded number of rows. `target_accept`: the step-size adaptation's target acceptance."""

    def __init__(self, spec: LawSpec, *, finetuned: bool, chains: int = 4, warmup: int = 1000, samples: int = 1000, target_accept: float = TARGET_ACCEPT):
        self.spec, self.finetuned = spec, finetuned
        self.chains, self.warmup, self.samples = chains, warmup, samples
        self.target_accept = target_accept
        self.names = parameter_names(spec, finetuned)
        self.latent_names = latent_names(spec, finetuned)

    def _chain_starts(self, mle: MLEResult, seed: int) -> dict:
        """Unconstrained per-chain starts of the plain sites: the profile optima of the best
        distinct gaps (within START_GAP_LOG_LIK of the best), cycled, each jittered slightly."""
        ll = np.asarray(mle.gap_log_likelihoods)
        usable = np.flatnonzero(ll >= ll[0] - START_GAP_LOG_LIK)
        rng = np.random.default_rng(seed)
        picks = usable[np.arange(self.chains) % usable.size]
        starts = {}
        for name in self.latent_names:
            value = np.asarray(mle.gap_starts[name], float)[picks]
            starts[name] = (value + 0.01 * rng.standard_normal(self.chains)).astype(np.float32)
        return starts

    def run(self, sweep: Sweep, *, seed: int = 0, mle: MLEResult | None = None, frame: Frame | None = None) -> PosteriorFit:
        """Sample the posterior of the law's parameters given `sweep`."""
        return self.launch(sweep, seed=seed, mle=mle, frame=frame)()

    def launch(self, sweep: Sweep, *, seed: int = 0, mle: MLEResult | None = None, frame: Frame | None = None, warn: bool = True):
        """Start sampling and return a function that waits for the draws and returns the
        PosteriorFit (warning when its diagnostics look bad, if `warn`). The compiled sampler runs
        on a worker thread (`_pool`), so launching several forms before finishing any runs them at
        the same time on different cores."""
        import jax

        if sweep.finetuned != self.finetuned:
            raise ValueError("this sampler was built for a sweep " + ("with" if self.finetuned else "without") + " finetuned rows")
        frame = frame or (mle.frame if mle is not None and mle.frame is not None else Frame.from_losses(sweep.loss))
        mle = mle or fit_mle(sweep, self.spec, seed=seed, frame=frame)
        args = model_args(sweep, frame, anchor_amount(sweep, self.spec))
        _, constrain = _compiled_nuts(self.spec, self.finetuned, self.chains, self.warmup, self.samples, self.target_accept)
        starts = sampling_starts(self.spec, self.finetuned, self._chain_starts(mle, seed), args)
        keys = jax.random.split(jax.random.PRNGKey(seed), self.chains)
        executable = _executable(self.spec, self.finetuned, self.chains, self.warmup, self.samples, self.target_accept, keys, starts, args)
        pending = _pool().submit(lambda: jax.block_until_ready(executable(keys, starts, args)))
        return functools.partial(self._finish, sweep, seed, mle, frame, args, constrain, pending, warn)

    def _finish(self, sweep: Sweep, seed: int, mle: MLEResult, frame: Frame, args: tuple, constrain, pending, warn: bool) -> PosteriorFit:
        import arviz as az

        z, diverging, steps = pending.result()
        flat = {name: value.reshape((self.chains * self.samples,) + value.shape[2:]) for name, value in z.items()}
        values = constrain(flat, args)
        grouped = {name: np.asarray(value, dtype=float).reshape(self.chains, self.samples) for name, value in values.items() if name in self.names or name in self.latent_names}
        samples = {name: grouped[name] for name in self.names}
        latent = {name: grouped[name] for name in self.latent_names}
        diverging = np.asarray(diverging)
        steps = np.asarray(steps)

        fit = PosteriorFit(spec=self.spec, samples=samples, mle=mle, diagnostics={}, idata=None, latent=latent, frame=frame, finetuned=self.finetuned)
        log_lik = fit.pointwise_log_likelihood(sweep).reshape(self.chains, self.samples, sweep.n_rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit.idata = az.from_dict(posterior=samples, log_likelihood={"obs": log_lik}, observed_data={"obs": sweep.correct}, sample_stats={"diverging": diverging})
            summary = az.summary(fit.idata, var_names=list(self.names), kind="diagnostics")
        r_hat = summary["r_hat"].to_numpy(float)
        ess = summary["ess_bulk"].to_numpy(float)
        fit.diagnostics = {
            "r_hat_max": float(np.nanmax(r_hat)) if np.isfinite(r_hat).any() else float("nan"),
            "ess_min": float(np.nanmin(ess)) if np.isfinite(ess).any() else float("nan"),
            "divergences": int(diverging.sum()),
            "divergence_fraction": float(diverging.mean()),
            "chains": self.chains,
            "draws_per_chain": self.samples,
            "warmup": self.warmup,
            "target_accept": self.target_accept,
            "mean_leapfrog_steps": float(steps.mean()),
            "tree_depth_hits": float(np.mean(steps >= 2**MAX_TREE_DEPTH - 1)),
            "chain_start_E0": _start_E0(self, mle, seed, frame).tolist(),
        }
        if warn:
            warn_if_diagnostics_bad(fit)
        return fit


def warn_if_diagnostics_bad(fit: PosteriorFit) -> None:
    """A UserWarning naming the form and every `diagnostics_problems` of its draws (none if fine)."""
    problems = diagnostics_problems(fit.diagnostics)
    if problems:
        warnings.warn(f"NUTS diagnostics look bad for the {fit.spec.form} form: " + "; ".join(problems) + ". Treat the posterior with care (more warmup/samples, or another form).", stacklevel=3)


def _start_E0(sampler: NUTSSampler, mle: MLEResult, seed: int, frame: Frame) -> np.ndarray:
    """The chains' starting E0 (loss units): the E0 profile is held fixed, so the unconstrained start
    maps back through the Uniform prior's box."""
    z = sampler._chain_starts(mle, seed)["E0_std"]
    u = frame.e0_low + (frame.e0_high - frame.e0_low) / (1.0 + np.exp(-z.astype(float)))
    return frame.to_loss(u)


def diagnostics_problems(diagnostics: dict) -> list[str]:
    """Human-readable reasons the sampler's output is not trustworthy (empty when fine)."""
    problems = []
    if not diagnostics["r_hat_max"] <= R_HAT_WARN:
        problems.append(f"max R-hat {diagnostics['r_hat_max']:.3f} > {R_HAT_WARN}")
    if not diagnostics["ess_min"] >= ESS_WARN:
        problems.append(f"min bulk ESS {diagnostics['ess_min']:.0f} < {ESS_WARN}")
    if diagnostics.get("divergence_fraction", 0.0) > DIVERGENCE_WARN:
        problems.append(f"{diagnostics['divergences']} divergent transitions ({100 * diagnostics['divergence_fraction']:.1f}% > {100 * DIVERGENCE_WARN:.1f}%)")
    return problems
