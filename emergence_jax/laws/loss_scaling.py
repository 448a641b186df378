"""Pretraining-loss scaling law L(N) = E∞ + A·N^(−α), to turn an emergence loss into a model size."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import optimize

from emergence_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class LossScaling:
    """L(N) in nats/token for N parameters."""

    irreducible: float
    coefficient: float
    exponent: float

    def loss(self, params):
        return self.irreducible + self.coefficient * np.asarray(params, dtype=float) ** (-self.exponent)

    def params_at(self, loss):
        """Parameters needed to reach `loss` (NaN where loss ≤ E∞, unreachable by scaling N)."""
        excess = np.asarray(loss, dtype=float) - self.irreducible
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            return np.where(excess > 0, (np.maximum(excess, 1e-300) / self.coefficient) ** (-1.0 / self.exponent), np.nan)


def _linear_part(sizes: np.ndarray, best: np.ndarray, exponent: float) -> tuple[float, float, float]:
    """(E∞, A, residual sum of squares) of the least-squares fit for a fixed exponent α: the law
    is linear in E∞ and A once α is fixed."""
    design = np.stack([np.ones_like(sizes), sizes ** (-exponent)], axis=1)
    (irreducible, coefficient), *_ = np.linalg.lstsq(design, best, rcond=None)
    residual = best - design @ np.array([irreducible, coefficient])
    return float(irreducible), float(coefficient), float(residual @ residual)


def fit_loss_scaling(params: np.ndarray, loss: np.ndarray) -> LossScaling:
    """Fit L(N) to each model size's lowest loss (its most-trained checkpoint) by least squares,
    profiling the exponent α over (0.01, 2) and solving E∞, A exactly for each α. Needs at least
    three distinct sizes."""
    sizes = np.unique(params[np.isfinite(params)])
    if sizes.size < 3:
        raise UserError(f"fitting L(N) needs at least 3 distinct 'params' values, got {sizes.size}; add model sizes")
    best = np.array([loss[params == n].min() for n in sizes])
    scale = sizes / sizes.min()  # conditions the design matrix; A is rescaled back below
    grid = np.linspace(0.01, 2.0, 200)
    rss = [_linear_part(scale, best, a)[2] for a in grid]
    index = int(np.argmin(rss))
    refined = optimize.minimize_scalar(lambda a: _linear_part(scale, best, a)[2], bounds=(grid[max(index - 1, 0)], grid[min(index + 1, grid.size - 1)]), method="bounded")
    exponent = float(refined.x)
    irreducible, coefficient, _ = _linear_part(scale, best, exponent)
    return LossScaling(irreducible, coefficient * sizes.min() ** exponent, exponent)
