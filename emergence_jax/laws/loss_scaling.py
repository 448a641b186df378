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
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(excess > 0, (np.maximum(excess, 1e-300) / self.coefficient) ** (-1.0 / self.exponent), np.nan)


def fit_loss_scaling(params: np.ndarray, loss: np.ndarray) -> LossScaling:
    """Fit L(N) to each model size's lowest loss (its most-trained checkpoint), by least squares in
    log-excess space. Needs at least three distinct sizes."""
    sizes = np.unique(params[np.isfinite(params)])
    if sizes.size < 3:
        raise UserError(f"fitting L(N) needs at least 3 distinct 'params' values, got {sizes.size}; add model sizes or drop --params-fit")
    best = np.array([loss[params == n].min() for n in sizes])

    def residuals(theta):
        irreducible, log_coefficient, exponent = theta
        return irreducible + np.exp(log_coefficient) * sizes ** (-exponent) - best

    x0 = [0.8 * best.min(), np.log(max(best.max() - 0.8 * best.min(), 1e-3)) + 0.3 * np.log(sizes.min()), 0.3]
    result = optimize.least_squares(residuals, x0, bounds=([0.0, -50.0, 0.01], [best.min(), 50.0, 2.0]))
    irreducible, log_coefficient, exponent = result.x
    return LossScaling(float(irreducible), float(np.exp(log_coefficient)), float(exponent))
