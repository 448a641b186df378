"""Maximum-likelihood fit of an emergence law with scipy: bounded, multi-start, deterministic per seed."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import optimize, special

from emergence_jax.laws.functions import LawSpec, parameter_names, predicted_accuracy
from emergence_jax.laws.sweep import Sweep

_PROB_EPS = 1e-9


def parameter_bounds(sweep: Sweep, spec: LawSpec) -> dict[str, tuple[float, float]]:
    """Box bounds for every free parameter, scaled to the data's loss range (nats).

    The same box is the support of the uniform priors in `laws.bayes`, so MLE and posterior live
    on one domain.
    """
    lo, hi = float(sweep.loss.min()), float(sweep.loss.max())
    margin = max(0.5, hi - lo)
    bounds = {
        "E0": (lo - margin, hi + margin),
        "shift": (0.0, 2.0 * margin),
        "alpha": (0.05, 5.0) if spec.law == "log_power" else (0.01, 2.0),
        "amplitude": (1e-3, 200.0),
        "jump": (0.0, 1.0),
        "floor_shift": (-0.25, 0.25),
        "concentration": (2.0, 1e5),
    }
    return {name: bounds[name] for name in parameter_names(spec, sweep.finetuned)}


def log_likelihood_rows(params: dict, sweep: Sweep, spec: LawSpec, *, normalised: bool = True) -> np.ndarray:
    """Log-likelihood of each row's correct count (nats), binomial or beta-binomial.

    `normalised=False` drops the binomial coefficient, a constant that the optimiser need not pay for.
    """
    p = np.clip(predicted_accuracy(params, sweep.loss, sweep.train_examples, sweep.chance, spec), _PROB_EPS, 1 - _PROB_EPS)
    k, n = sweep.correct, sweep.n_eval
    if spec.likelihood == "binomial":
        log_lik = k * np.log(p) + (n - k) * np.log1p(-p)
    else:
        a, b = p * params["concentration"], (1 - p) * params["concentration"]
        log_lik = special.betaln(k + a, n - k + b) - special.betaln(a, b)
    if normalised:
        log_lik = log_lik + special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)
    return log_lik


@dataclasses.dataclass(frozen=True)
class MLEResult:
    params: dict[str, float]
    log_likelihood: float
    n_starts: int
    n_converged: int


_LOG_SCALED = ("amplitude", "concentration")


def _to_vector(params: dict, names) -> np.ndarray:
    return np.array([np.log(params[n]) if n in _LOG_SCALED else params[n] for n in names])


def _to_params(vector: np.ndarray, names) -> dict:
    return {n: float(np.exp(v)) if n in _LOG_SCALED else float(v) for n, v in zip(names, vector)}


def _largest_jumps(sweep: Sweep, count: int) -> np.ndarray:
    """Midpoints between neighbouring checkpoints (by loss) where accuracy rises the most, using
    the few-shot rows when there are any."""
    rows = sweep.fewshot() if np.any(sweep.train_examples == 0) else sweep
    order = np.argsort(rows.loss)
    loss, accuracy = rows.loss[order], rows.accuracy[order]
    rise = accuracy[:-1] - accuracy[1:]
    best = np.argsort(-rise)[:count]
    return (loss[best] + loss[best + 1]) / 2


def _starts(sweep: Sweep, bounds: dict, n_starts: int, rng: np.random.Generator) -> list[dict]:
    """Starting points. A sharp elbow or jump sits between two checkpoints and the likelihood is
    flat while E0 moves between them, so E0 starts at midpoints between consecutive distinct
    observed losses: the four where accuracy rises most, then others spread evenly. Other
    parameters are uniform in their box (log-uniform for scale parameters)."""
    losses = np.unique(sweep.loss)
    midpoints = (losses[1:] + losses[:-1]) / 2 if losses.size > 1 else losses
    spread = midpoints[np.unique(np.linspace(0, midpoints.size - 1, n_starts).round().astype(int))]
    picks = np.concatenate([_largest_jumps(sweep, 4), spread]) if losses.size > 1 else spread
    starts = []
    for index in range(n_starts):
        start = {}
        for name, (low, high) in bounds.items():
            if name in _LOG_SCALED:
                start[name] = float(np.exp(rng.uniform(np.log(low), np.log(high))))
            else:
                start[name] = float(rng.uniform(low, high))
        start["E0"] = float(picks[index % picks.size])
        starts.append(start)
    return starts


def fit_mle(sweep: Sweep, spec: LawSpec, *, n_starts: int = 24, seed: int = 0, starts: list[dict] | None = None) -> MLEResult:
    """Maximise the likelihood over the bounded box from several starts; keep the best.

    L-BFGS-B refines each start, then Nelder–Mead polishes the best one (the ReLU elbow makes the
    likelihood only piecewise smooth). Same sweep, spec and seed give the same answer.
    """
    bounds = parameter_bounds(sweep, spec)
    names = list(bounds)
    box = [(np.log(lo), np.log(hi)) if n in _LOG_SCALED else (lo, hi) for n, (lo, hi) in bounds.items()]
    rng = np.random.default_rng(seed)
    candidates = list(starts or []) + _starts(sweep, bounds, n_starts, rng)

    def objective(vector):
        value = -log_likelihood_rows(_to_params(vector, names), sweep, spec, normalised=False).sum()
        return value if np.isfinite(value) else 1e30

    best, converged = None, 0
    for start in candidates:
        x0 = np.clip(_to_vector(start, names), [b[0] for b in box], [b[1] for b in box])
        result = optimize.minimize(objective, x0, method="L-BFGS-B", bounds=box)
        converged += bool(result.success)
        if best is None or result.fun < best.fun:
            best = result
    polished = optimize.minimize(objective, best.x, method="Nelder-Mead", bounds=box, options={"xatol": 1e-6, "fatol": 1e-8, "maxiter": 1000})
    if polished.fun < best.fun:
        best = polished
    params = _to_params(best.x, names)
    return MLEResult(params=params, log_likelihood=float(log_likelihood_rows(params, sweep, spec).sum()), n_starts=len(candidates), n_converged=converged)
