"""Rebuild the bundled SIMULATED finetuning sweep from its stated true law (run once, by hand):

    python -m emergence_jax.examples.make_simulated_example

Writes `simulated_sweep.csv` (pre-emergence checkpoints: few-shot rows at chance, finetuned rows
for D = 250…8000 with two subsets each), `simulated_heldout.csv` (few-shot rows of stronger,
post-emergence checkpoints, for the backtest) and `simulated_truth.json` (the true parameters).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from emergence_jax.laws.functions import LawSpec, law_coefficients
from emergence_jax.laws.simulate import simulate_sweep_rows
from emergence_jax.records import write_records

SPEC = LawSpec(form="relu", law="log_power", D0=5.0, D_ref=8000.0)
TRUTH = {"E0": 2.30, "shift": 0.45, "alpha": 1.5, "amplitude": 2.5}
FIT_LOSSES = np.round(np.linspace(2.36, 2.90, 10), 4)
HELDOUT_LOSSES = np.round(np.linspace(2.06, 2.33, 6), 4)
FLOPS_PER_NAT = 2.0  # simulated FLOPs double per 0.1 nat: flops = 1e21 · 2^((2.9 − L)/0.1)


def main() -> None:
    here = Path(__file__).parent
    rows = simulate_sweep_rows(TRUTH, SPEC, losses=FIT_LOSSES, fewshot_losses=HELDOUT_LOSSES, n_eval=1000, chance=0.25, shots=5, task="simulated_mc", seed=2024)
    for row in rows:
        row["flops"] = float(1e21 * FLOPS_PER_NAT ** ((2.9 - row["pretrain_loss"]) / 0.1))
    fit_rows = [r for r in rows if r["pretrain_loss"] >= FIT_LOSSES.min()]
    heldout_rows = [r for r in rows if r["pretrain_loss"] < FIT_LOSSES.min()]
    write_records(here / "simulated_sweep.csv", fit_rows)
    write_records(here / "simulated_heldout.csv", heldout_rows)
    truth = {
        "note": "SIMULATED data drawn from the law below; not a real model.",
        "spec": dataclasses.asdict(SPEC),
        "params": TRUTH,
        "law_coefficients": law_coefficients(TRUTH["E0"], TRUTH["shift"], TRUTH["alpha"], SPEC),
        "true_fewshot_emergence_loss": TRUTH["E0"],
        "fit_losses": FIT_LOSSES.tolist(),
        "heldout_losses": HELDOUT_LOSSES.tolist(),
        "n_eval": 1000,
        "seed": 2024,
    }
    (here / "simulated_truth.json").write_text(json.dumps(truth, indent=2) + "\n")


if __name__ == "__main__":
    main()
