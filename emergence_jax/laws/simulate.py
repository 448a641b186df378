"""Simulated finetuning sweeps drawn from a known emergence law: for parameter-recovery and
calibration tests, and the bundled example (clearly labelled simulated)."""

from __future__ import annotations

import numpy as np

from emergence_jax.laws.functions import LawSpec, predicted_accuracy


def simulate_sweep_rows(
    truth: dict,
    spec: LawSpec,
    *,
    losses,
    train_examples=(250, 500, 1000, 2000, 4000, 8000),
    subsets: int = 2,
    n_eval: int = 1000,
    chance: float = 0.25,
    shots: int = 5,
    task: str = "simulated",
    fewshot_losses=None,
    concentration: float | None = None,
    seed: int = 0,
) -> list[dict]:
    """Results rows for checkpoints at `losses` (nats/token), each finetuned on every D in
    `train_examples` with `subsets` random subsets, plus a few-shot row per checkpoint at
    `losses` and `fewshot_losses` (e.g. stronger held-out checkpoints). Correct counts are binomial
    draws from the true law `truth` (parameters as in `laws.functions`), or, with `concentration`
    φ, beta-binomial: each row's accuracy is first drawn from Beta(p·φ, (1 − p)·φ) (over-dispersion,
    e.g. checkpoint-to-checkpoint noise; the variance of a row's accuracy grows by about n/φ).
    """
    rng = np.random.default_rng(seed)
    rows = []

    def add(loss, D, subset):
        p = float(predicted_accuracy(truth, np.float64(loss), np.float64(D), np.float64(chance), spec))
        if concentration is not None:
            p = float(rng.beta(max(p, 1e-9) * concentration, max(1 - p, 1e-9) * concentration))
        correct = rng.binomial(n_eval, p)
        rows.append(
            {
                "model": f"sim@loss{loss:.4f}",
                "pretrain_loss": round(float(loss), 6),
                "train_examples": int(D),
                "shots": shots,
                "accuracy": correct / n_eval,
                "n_eval": n_eval,
                "chance": chance,
                "task": task,
                "seed": subset,
                "metric": "accuracy",
            }
        )

    for loss in losses:
        add(loss, 0, 0)
        for D in train_examples:
            for subset in range(subsets):
                add(loss, D, subset)
    for loss in fewshot_losses if fewshot_losses is not None else ():
        add(loss, 0, 0)
    return rows
