"""What a user reads off a fitted posterior: the few-shot emergence loss, its CDF, predictive
curves per data amount, and the probability that a model at a given loss has emerged."""

from __future__ import annotations

import numpy as np

from emergence_jax.laws.functions import LawSpec, predicted_accuracy

QUANTILES = {"q05": 5.0, "median": 50.0, "q95": 95.0}


def summarise(draws: np.ndarray) -> dict[str, float]:
    """Median and 5%/95% quantiles of a 1-D array of posterior draws."""
    return {name: float(np.percentile(draws, q)) for name, q in QUANTILES.items()}


def emergence_cdf(E0_draws: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """P(E(D0) ≥ L) for each loss L in `grid`: the probability that a model at pretraining loss L
    (nats/token) is past few-shot emergence. Decreasing in L."""
    sorted_draws = np.sort(E0_draws)
    return 1.0 - np.searchsorted(sorted_draws, grid, side="left") / sorted_draws.size


def probability_emerged(E0_draws: np.ndarray, loss: float, ess: float | None = None) -> dict[str, float]:
    """P(a model at `loss` nats/token has emerged few-shot) = P(E(D0) > loss), with a 90% Monte
    Carlo interval from the effective sample size (`ess`, defaults to the number of draws)."""
    p = float(np.mean(E0_draws > loss))
    n = float(ess or E0_draws.size)
    half_width = 1.645 * np.sqrt(max(p * (1 - p), 0.25 / n) / n)
    return {"probability": p, "low": max(0.0, p - half_width), "high": min(1.0, p + half_width)}


def predictive_bands(draws: dict[str, np.ndarray], spec: LawSpec, losses: np.ndarray, train_examples: float, chance: float, max_draws: int = 1000) -> dict[str, np.ndarray]:
    """Median and 5%/95% bands of expected accuracy on `losses` for one data amount D (0 = few-shot)."""
    n = next(iter(draws.values())).size
    keep = np.linspace(0, n - 1, min(n, max_draws)).astype(int)
    params = {name: value[keep][:, None] for name, value in draws.items()}
    curves = predicted_accuracy(params, losses[None, :], np.float64(train_examples), np.float64(chance), spec)
    return {name: np.percentile(curves, q, axis=0) for name, q in QUANTILES.items()}
