"""PNG plots of a fit: data with fitted curves per data amount and the extrapolated few-shot curve
with its band; the CDF of the few-shot emergence loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emergence_jax.laws.fit import EmergenceFit
from emergence_jax.laws.posterior import emergence_cdf, predictive_bands, summarise
from emergence_jax.laws.sweep import Sweep


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fit(fit: EmergenceFit, sweep: Sweep, path: Path) -> None:
    """Accuracy vs pretraining loss (x axis reversed: stronger models to the right). Losses far
    above the rest (beyond the upper quartile + 5 interquartile ranges, e.g. a step-0 checkpoint
    at 12 nats) are left off the axis so they do not squash the region around the elbow."""
    plt = _pyplot()
    draws = fit.posterior.draws()
    E0 = summarise(fit.E0_draws())
    q1, q3 = np.percentile(sweep.loss, [25, 75])
    shown = sweep.loss[sweep.loss <= q3 + 5 * (q3 - q1)]
    lo, hi = float(min(sweep.loss.min(), E0["q05"])), float(max(shown.max(), E0["q95"]))
    pad = 0.05 * (hi - lo) + 1e-3
    grid = np.linspace(lo - pad, hi + pad, 300)
    chance = float(np.median(sweep.chance))
    amounts = np.unique(sweep.train_examples)
    colours = plt.cm.viridis(np.linspace(0.15, 0.9, max(amounts.size - 1, 1)))
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for index, D in enumerate(amounts):
        rows = sweep.train_examples == D
        colour = "black" if D == 0 else colours[index - 1 if amounts[0] == 0 else index]
        label = "few-shot" if D == 0 else f"D = {int(D)}"
        ax.scatter(sweep.loss[rows], sweep.accuracy[rows], s=14, color=colour, alpha=0.8, label=label)
        if D > 0:
            ax.plot(grid, predictive_bands(draws, fit.spec, grid, D, chance)["median"], color=colour, lw=1.2)
    fewshot = predictive_bands(draws, fit.spec, grid, 0.0, chance)
    ax.plot(grid, fewshot["median"], color="crimson", lw=2, label=f"few-shot prediction (D0 = {fit.spec.D0:g}, {fit.spec.form} form)")
    ax.fill_between(grid, fewshot["q05"], fewshot["q95"], color="crimson", alpha=0.2, label="90% band")
    ax.axvspan(E0["q05"], E0["q95"], color="crimson", alpha=0.08)
    ax.axvline(E0["median"], color="crimson", ls="--", lw=1)
    ax.axhline(chance, color="grey", ls=":", lw=1)
    ax.set_xlim(hi + pad, lo - pad)
    ax.set_xlabel(f"pretraining loss ({fit.loss_unit}/token)")
    ax.set_ylabel("accuracy")
    law = f"{fit.spec.law} law" if sweep.finetuned else "few-shot rows only"
    weights = ", ".join(f"{form} {weight:.2f}" for form, weight in fit.weights.items())
    if fit.status["status"] == "beyond_data":
        title = f"{law}: not emerged in the data; emergence needs loss below {fit.status['upper_bound']:.3f} {fit.loss_unit}"
    else:
        title = f"{law} ({weights}): few-shot emergence at {E0['median']:.3f} [{E0['q05']:.3f}, {E0['q95']:.3f}] {fit.loss_unit}"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_cdf(fit: EmergenceFit, path: Path) -> None:
    """P(emerged at loss L) = P(E(D0) ≥ L) against L."""
    plt = _pyplot()
    draws = fit.E0_draws()
    q = summarise(draws)
    width = max(q["q95"] - q["q05"], 1e-3)
    grid = np.linspace(q["q05"] - 1.5 * width, q["q95"] + 1.5 * width, 400)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(grid, emergence_cdf(draws, grid), color="crimson")
    ax.axvline(q["median"], color="crimson", ls="--", lw=1)
    ax.set_xlim(grid[-1], grid[0])
    ax.set_xlabel(f"pretraining loss L ({fit.loss_unit}/token)")
    ax.set_ylabel("P(few-shot emergence at or before L)")
    ax.set_title("CDF of the few-shot emergence point (all forms, stacking weights)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
