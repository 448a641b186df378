"""Loss-threshold analysis (Du et al. 2024) on any per-row metric column, and the "ground-truth"
few-shot emergence point used to validate predictions.

Du et al. find task performance flat above a pretraining-loss threshold η and rising below it, and
that continuous metrics (Brier score, probability of the correct choice) keep the tipping point.
`loss_threshold` fits y = base + slope·max(0, η − L) by least squares (slope may be negative, e.g.
for the Brier score) and compares it with a straight line y = a + b·L by AIC, so a user can ask of
each metric whether it shows a threshold at all.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from emergence_jax.errors import UserError
from emergence_jax.laws.functions import LawSpec
from emergence_jax.laws.mle import fit_mle
from emergence_jax.laws.sweep import Sweep


def _hinge_least_squares(loss: np.ndarray, y: np.ndarray, eta: float) -> tuple[float, float, float]:
    """(base, slope, residual sum of squares) of y ≈ base + slope·max(0, η − L), exact for fixed η."""
    design = np.stack([np.ones_like(loss), np.maximum(eta - loss, 0.0)], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coefficients
    return float(coefficients[0]), float(coefficients[1]), float(residual @ residual)


def loss_threshold(loss: np.ndarray, y: np.ndarray) -> dict:
    """Fit the threshold η (nats/token) for metric values `y` at pretraining losses `loss`.

    η is profiled: for each η the hinge model is linear, so (base, slope) are solved exactly; η is
    searched over midpoints between distinct losses, then refined by bounded scalar minimisation.
    Returns η, base, slope, R², and ΔAIC = AIC(line) − AIC(hinge) (> 0 favours a threshold).
    """
    loss, y = np.asarray(loss, float), np.asarray(y, float)
    keep = np.isfinite(loss) & np.isfinite(y)
    loss, y = loss[keep], y[keep]
    distinct = np.unique(loss)
    if distinct.size < 4:
        raise UserError(f"a loss threshold needs at least 4 distinct losses with a value, got {distinct.size}")
    candidates = (distinct[1:] + distinct[:-1]) / 2
    rss = [_hinge_least_squares(loss, y, eta)[2] for eta in candidates]
    best = int(np.argmin(rss))
    low, high = distinct[max(best - 1, 0)], distinct[min(best + 2, distinct.size - 1)]
    refined = optimize.minimize_scalar(lambda eta: _hinge_least_squares(loss, y, eta)[2], bounds=(low, high), method="bounded")
    eta = float(refined.x) if refined.fun <= rss[best] else float(candidates[best])
    base, slope, hinge_rss = _hinge_least_squares(loss, y, eta)
    line = np.polyfit(loss, y, 1)
    line_rss = float(np.sum((y - np.polyval(line, loss)) ** 2))
    n = y.size
    total = float(np.sum((y - y.mean()) ** 2))

    def aic(rss_value, k):
        return n * np.log(max(rss_value, 1e-300) / n) + 2 * k

    return {
        "threshold_loss": eta,
        "base": base,
        "slope": slope,
        "r2": 1.0 - hinge_rss / total if total > 0 else 1.0,
        "delta_aic_vs_line": float(aic(line_rss, 2) - aic(hinge_rss, 3)),
        "n_points": int(n),
    }


def fewshot_emergence_point(sweep: Sweep, spec: LawSpec, *, seed: int = 0) -> float:
    """The observed few-shot emergence loss: the elbow E0 fitted by maximum likelihood to the
    few-shot rows only, post-emergence checkpoints included. This is the "truth" a prediction from
    pre-emergence checkpoints is checked against (nats/token)."""
    fewshot = sweep.fewshot()
    if fewshot.n_rows < 3:
        raise UserError(f"the ground-truth emergence point needs at least 3 few-shot rows (train_examples = 0), got {fewshot.n_rows}")
    return float(fit_mle(fewshot, spec, seed=seed).params["E0"])
