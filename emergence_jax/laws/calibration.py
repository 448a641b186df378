"""Simulation-based calibration of the default fit over a misspecification grid.

Each simulated sweep draws a true law, simulates a finetuning sweep of pre-emergence checkpoints,
and fits it exactly as `emergence-jax fit` does by default (all forms, stacking, beta-binomial
likelihood). The grid crosses

- the generating form: ``relu``, ``softplus`` (temperature 0.03 nats), ``jump`` (width 0.005 nats);
- over-dispersion: none (binomial), φ = 300, φ = 100 (beta-binomial rows);
- the loss unit of the rows: ``nats``, ``bits`` (losses divided by ln 2; the fit reports bits and
  is converted back to nats to score);
- the data amount: ``small`` (6 checkpoints, D = 250/1000/4000, one subset, 500 questions: 24 rows)
  and ``large`` (10 checkpoints, D = 250…8000, two subsets, 1,000 questions: 130 rows).

True parameters per sweep: E0 ~ U(2.0, 2.6) nats, shift ~ U(0.2, 0.6) nats, α ~ U(0.7, 2.0),
amplitude ~ U(1.5, 5) accuracy/nat (jump: J ~ U(0.1, 0.3) and amplitude ~ U(0.5, 2)); the
checkpoints sit at E0 + 0.05 … E0 + 0.65 nats, so few-shot E0 is extrapolated, as in the paper.
Scored: whether the 90% interval of the combined E0 covers the truth, and the error of its median
(nats). One compiled sampler per (form, row count) serves every sweep.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
import warnings

import numpy as np

from emergence_jax.laws.functions import LawSpec
from emergence_jax.laws.simulate import simulate_sweep_rows
from emergence_jax.laws.sweep import sweep_from_records

FORMS = ("relu", "softplus", "jump")
DISPERSIONS = (None, 300.0, 100.0)
UNITS = ("nats", "bits")
AMOUNTS = {
    "small": {"checkpoints": 6, "train_examples": (250, 1000, 4000), "subsets": 1, "n_eval": 500},
    "large": {"checkpoints": 10, "train_examples": (250, 500, 1000, 2000, 4000, 8000), "subsets": 2, "n_eval": 1000},
}
TEMPERATURE, JUMP_WIDTH = 0.03, 0.005


@dataclasses.dataclass(frozen=True)
class Cell:
    form: str
    dispersion: float | None
    unit: str
    amount: str

    @property
    def label(self) -> str:
        dispersion = "none" if self.dispersion is None else f"phi={self.dispersion:g}"
        return f"{self.form}/{dispersion}/{self.unit}/{self.amount}"


def grid(amounts=tuple(AMOUNTS)) -> list[Cell]:
    return [Cell(*values) for values in itertools.product(FORMS, DISPERSIONS, UNITS, amounts)]


def simulate(cell: Cell, seed: int) -> tuple[list[dict], float]:
    """(results rows in the cell's loss unit, true E0 in nats) for one simulated sweep."""
    rng = np.random.default_rng(seed)
    amount = AMOUNTS[cell.amount]
    spec = LawSpec(form=cell.form, D0=5, D_ref=float(max(amount["train_examples"])), temperature=TEMPERATURE, jump_width=JUMP_WIDTH)
    truth = {"E0": rng.uniform(2.0, 2.6), "shift": rng.uniform(0.2, 0.6), "alpha": rng.uniform(0.7, 2.0), "amplitude": rng.uniform(1.5, 5.0)}
    if cell.form == "jump":
        truth.update(jump=rng.uniform(0.1, 0.3), amplitude=rng.uniform(0.5, 2.0))
    losses = np.linspace(truth["E0"] + 0.05, truth["E0"] + 0.65, amount["checkpoints"])
    rows = simulate_sweep_rows(truth, spec, losses=losses, train_examples=amount["train_examples"], subsets=amount["subsets"], n_eval=amount["n_eval"], concentration=cell.dispersion, seed=seed)
    if cell.unit == "bits":
        for row in rows:
            row["pretrain_loss"] = row["pretrain_loss"] / math.log(2.0)
    return rows, float(truth["E0"])


def run_sweep(cell: Cell, seed: int, sampler) -> dict:
    """Fit one simulated sweep with the default settings; score it in nats."""
    from emergence_jax.laws.fit import LOSS_UNITS, fit_emergence_law

    rows, truth = simulate(cell, seed)
    sweep = sweep_from_records(rows)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_emergence_law(sweep, sampler=dataclasses.replace(sampler, seed=seed), loss_unit=cell.unit, checks=False)
    seconds = time.perf_counter() - start
    draws = fit.E0_draws() * LOSS_UNITS[cell.unit]
    q05, median, q95 = np.percentile(draws, [5, 50, 95])
    return {
        "cell": cell.label,
        "seed": seed,
        "truth": truth,
        "median": float(median),
        "q05": float(q05),
        "q95": float(q95),
        "covered": bool(q05 <= truth <= q95),
        "error": float(median - truth),
        "status": fit.status["status"],
        "weights": fit.weights,
        "r_hat_max": max(f.diagnostics["r_hat_max"] for f in fit.fits.values()),
        "divergence_fraction": max(f.diagnostics["divergence_fraction"] for f in fit.fits.values()),
        "seconds": seconds,
    }


def summarise_study(results: list[dict]) -> dict:
    """Coverage, mean error and median width per cell and overall, with the pass/fail of the
    targets (overall 85–95%, every cell ≥ 80%, |mean error| ≤ 0.01 nats)."""
    cells = {}
    for label in dict.fromkeys(r["cell"] for r in results):
        rows = [r for r in results if r["cell"] == label]
        cells[label] = {
            "sweeps": len(rows),
            "coverage": float(np.mean([r["covered"] for r in rows])),
            "mean_error": float(np.mean([r["error"] for r in rows])),
            "median_width": float(np.median([r["q95"] - r["q05"] for r in rows])),
        }
    coverage = float(np.mean([r["covered"] for r in results]))
    mean_error = float(np.mean([r["error"] for r in results]))
    return {
        "sweeps": len(results),
        "coverage": coverage,
        "mean_error": mean_error,
        "mean_abs_error": float(np.mean([abs(r["error"]) for r in results])),
        "median_width": float(np.median([r["q95"] - r["q05"] for r in results])),
        "seconds_per_sweep": float(np.mean([r["seconds"] for r in results])),
        "targets": {
            "overall_coverage_85_95": bool(0.85 <= coverage <= 0.95),
            "every_cell_at_least_80": bool(all(c["coverage"] >= 0.8 for c in cells.values())),
            "mean_error_within_0.01": bool(abs(mean_error) <= 0.01),
        },
        "cells": cells,
    }


def run_study(cells: list[Cell], per_cell: int, sampler, *, seed: int = 0, progress=None, done=()) -> dict:
    """Fit `per_cell` sweeps in every cell (grouped by row count so compilations are reused).
    Results in `done` (from an interrupted run with the same settings) are kept, not refitted;
    `progress(result)` is called after each new fit."""
    finished = {(r["cell"], r["seed"]): r for r in done}
    results = []
    for cell in sorted(cells, key=lambda cell: cell.amount):
        for repeat in range(per_cell):
            sweep_seed = seed + 1000 * grid().index(cell) + repeat
            result = finished.get((cell.label, sweep_seed))
            if result is None:
                result = run_sweep(cell, sweep_seed, sampler)
                if progress:
                    progress(result)
            results.append(result)
    return {"summary": summarise_study(results), "results": results}
