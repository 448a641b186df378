"""Maximum likelihood of the emergence law: the NumPyro model's observation log-density
(`numpyro.infer.log_likelihood`, priors off), maximised over the priors' support.

A sharp elbow or step has one likelihood mode per gap between adjacent checkpoints, so a single
start is not enough. The optimiser

1. profiles E0: it holds E0 fixed at the midpoint of every gap between adjacent checkpoint losses
   and on a grid across the prior's box, and maximises the other parameters (batched Adam,
   all starts at once, compiled once per row count);
2. frees E0 and polishes the best profile points jointly with L-BFGS-B.

The profile (E0 grid -> best log-likelihood) is kept, and its per-gap optima seed NUTS chains in
different gaps. Deterministic for a given sweep, spec and seed.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from emergence_jax.laws.functions import LawSpec, parameter_names
from emergence_jax.laws.model import Frame, bound_model, latent_names, model_args
from emergence_jax.laws.sweep import Sweep

ADAM_STEPS = 300
GRID_POINTS = 24
FAR_GRID_START = 2.0  # ranges below the lowest checkpoint where the even E0 grid stops and doubling steps begin
RANDOM_STARTS = 16
POLISHED = 3


@dataclasses.dataclass(frozen=True)
class MLEResult:
    """params: loss-unit parameters (E0 in the input's loss unit); log_likelihood: the model's
    normalised log-likelihood at params (nats); latent: the model's sample sites at the optimum;
    profile: {"E0": [...], "log_likelihood": [...]} (E0 held fixed, others maximised), sorted by E0;
    gap_starts: unconstrained latent starts (name -> [k]), the best per distinct E0 region, best first,
    with their log-likelihoods in gap_log_likelihoods."""

    params: dict[str, float]
    log_likelihood: float
    n_starts: int
    n_converged: int
    latent: dict = dataclasses.field(default_factory=dict)
    profile: dict = dataclasses.field(default_factory=dict)
    gap_starts: dict = dataclasses.field(default_factory=dict)
    gap_log_likelihoods: tuple = ()
    frame: Frame | None = None


def parameter_count(spec: LawSpec, finetuned: bool) -> int:
    """Number of free parameters (for AIC)."""
    return len(parameter_names(spec, finetuned))


@functools.lru_cache(maxsize=32)
def _kernels(spec: LawSpec, finetuned: bool):
    import jax
    import jax.numpy as jnp
    import optax
    from numpyro.infer import log_likelihood
    from numpyro.infer.util import constrain_fn, unconstrain_fn

    model = bound_model(spec, finetuned)

    def total_log_lik(z, args):
        params = constrain_fn(model, args, {}, z)
        value = log_likelihood(model, params, *args)["obs"].sum()
        return jnp.where(jnp.isfinite(value), value, -1e30)

    def neg(z, args):
        return -total_log_lik(z, args)

    def adam(z0, mask, args, steps):
        optimiser = optax.adam(optax.cosine_decay_schedule(0.05, steps, 0.02))
        state = optimiser.init(z0)

        def step(carry, _):
            z, state = carry
            grads = jax.grad(neg)(z, args)
            grads = jax.tree.map(lambda g, m: jnp.where(jnp.isfinite(g), g, 0.0) * m, grads, mask)
            updates, state = optimiser.update(grads, state, z)
            return (optax.apply_updates(z, updates), state), None

        (z, _), _ = jax.lax.scan(step, (z0, state), None, length=steps)
        return z, total_log_lik(z, args)

    batched_adam = jax.jit(jax.vmap(adam, in_axes=(0, None, None, None)), static_argnums=3)
    unconstrain = jax.jit(jax.vmap(lambda params, args: unconstrain_fn(model, args, {}, params), in_axes=(0, None)))
    constrain = jax.jit(lambda z, args: constrain_fn(model, args, {}, z, return_deterministic=True))
    value_and_grad = jax.jit(jax.value_and_grad(neg))
    batched_log_lik = jax.jit(jax.vmap(total_log_lik, in_axes=(0, None)))
    return batched_adam, unconstrain, constrain, value_and_grad, batched_log_lik


def _prior_median(name: str, frame: Frame, spec: LawSpec) -> float:
    return {
        "shift_std": 0.5,
        "alpha": 1.0 if spec.law == "log_power" else 0.3,
        "amplitude_std": 1.0,
        "jump": 0.2,
        "jump_width_std": frame.gap,
        "temperature_std": frame.gap,
        "floor_shift": 0.0,
        "concentration": 300.0,
    }[name]


def _random_value(name: str, frame: Frame, spec: LawSpec, rng: np.random.Generator) -> float:
    if name == "jump":
        return float(rng.uniform(0.02, 0.98))
    if name == "floor_shift":
        return float(rng.normal(0.0, 0.03))
    if name == "shift_std":
        return float(abs(rng.normal(0.0, 1.0)) + 1e-3)
    return float(_prior_median(name, frame, spec) * np.exp(rng.normal(0.0, 1.0)))


def _e0_candidates(sweep: Sweep, frame: Frame) -> np.ndarray:
    """E0 values (u) to profile: every gap midpoint between adjacent distinct checkpoint losses,
    one gap beyond each end, an even grid from two ranges below the checkpoints to the prior box's
    top, and ranges doubling from there down to the box's floor (a loss of 0), all strictly inside it."""
    losses = np.unique(frame.to_std(sweep.loss))
    midpoints = (losses[1:] + losses[:-1]) / 2
    ends = np.array([losses[0] - frame.gap / 2, losses[-1] + frame.gap / 2])
    pad = 1e-4 * (frame.e0_high - frame.e0_low)
    near_floor = max(frame.e0_low, -FAR_GRID_START)
    grid = np.linspace(near_floor + pad, frame.e0_high - pad, GRID_POINTS)
    far = -FAR_GRID_START * 2.0 ** np.arange(1, 64)
    far = np.r_[far[far > frame.e0_low], frame.e0_low]
    values = np.concatenate([midpoints, ends, grid, far])
    return np.unique(np.clip(values, frame.e0_low + pad, frame.e0_high - pad))


def fit_mle(sweep: Sweep, spec: LawSpec, *, n_starts: int = RANDOM_STARTS, seed: int = 0, starts: list[dict] | None = None, frame: Frame | None = None) -> MLEResult:
    """Maximise the model's log-likelihood (profile over E0 in every checkpoint gap, then
    L-BFGS-B on all parameters from the best profile points); `starts` are extra loss-unit parameter dicts to start from (e.g. a previous fit)."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree
    from scipy import optimize

    finetuned = sweep.finetuned
    frame = frame or Frame.from_losses(sweep.loss)
    names = latent_names(spec, finetuned)
    batched_adam, unconstrain, constrain, value_and_grad, batched_log_lik = _kernels(spec, finetuned)
    args = model_args(sweep, frame)
    rng = np.random.default_rng(seed)

    candidates = _e0_candidates(sweep, frame)
    e0 = list(candidates)
    others = {name: [_prior_median(name, frame, spec)] * len(candidates) for name in names if name != "E0_std"}
    for _ in range(n_starts):
        e0.append(float(rng.choice(candidates)))
        for name in others:
            others[name].append(_random_value(name, frame, spec, rng))
    for start in starts or []:
        latent = frame.latent_from_params(start)
        e0.append(float(np.clip(latent["E0_std"], candidates.min(), candidates.max())))
        for name in others:
            others[name].append(float(latent.get(name, _prior_median(name, frame, spec))))
    constrained = {"E0_std": np.array(e0), **{name: np.array(values) for name, values in others.items()}}
    constrained = {name: jnp.asarray(constrained[name], jnp.float32) for name in names}
    z0 = unconstrain(constrained, args)

    profile_mask = {name: jnp.float32(0.0 if name == "E0_std" else 1.0) for name in names}
    z_profile, ll_profile = batched_adam(z0, profile_mask, args, ADAM_STEPS)
    ll_profile = np.asarray(ll_profile, float)
    z_joint, ll_joint = z_profile, ll_profile  # L-BFGS-B frees E0 from the best profile points

    _, unravel = ravel_pytree(jax.tree.map(lambda a: a[0], z_joint))

    def objective(vector):
        value, grad = value_and_grad(unravel(jnp.asarray(vector, jnp.float32)), args)
        value = float(value)
        return (value, np.asarray(ravel_pytree(grad)[0], float)) if np.isfinite(value) else (1e30, np.zeros_like(vector))

    best_value, best_z, converged = np.inf, None, 0
    for index in np.argsort(-ll_joint)[:POLISHED]:
        start = np.asarray(ravel_pytree(jax.tree.map(lambda a: a[index], z_joint))[0], float)
        result = optimize.minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": 500})
        converged += bool(result.success)
        for value, vector in ((result.fun, result.x), (-ll_joint[index], start)):
            if value < best_value:
                best_value, best_z = value, vector
    z_best = unravel(jnp.asarray(best_z, jnp.float32))
    latent_best = constrain(z_best, args)
    params = {name: float(latent_best[name]) for name in parameter_names(spec, finetuned)}
    latent = {name: float(latent_best[name]) for name in names}
    log_lik = float(batched_log_lik(jax.tree.map(lambda a: a[None], z_best), args)[0])

    # the profile: for each candidate E0, the best of the starts held at it
    e0 = np.asarray(e0)
    best_start = np.array([np.flatnonzero(e0 == c)[np.argmax(ll_profile[e0 == c])] for c in candidates])
    profile_ll = ll_profile[best_start]
    profile_E0 = np.asarray(frame.to_loss(candidates))
    order = np.argsort(-profile_ll)
    gap_starts = {name: np.asarray(z_profile[name])[best_start[order]] for name in names}
    return MLEResult(
        params=params,
        log_likelihood=log_lik,
        n_starts=int(ll_profile.size),
        n_converged=converged,
        latent=latent,
        profile={"E0": profile_E0.tolist(), "log_likelihood": profile_ll.tolist()},
        gap_starts=gap_starts,
        gap_log_likelihoods=tuple(float(v) for v in profile_ll[order]),
        frame=frame,
    )
