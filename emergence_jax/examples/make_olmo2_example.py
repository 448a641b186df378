"""Rebuild `olmo2_fewshot.csv` from the published OLMo 2 checkpoint table (run once, by hand).

Source table: allenai/OLMo-ladder @ 67a3f44 (Apache-2.0), reshaped in the project's shared
validation data as `olmo2_7b_13b_checkpoints.csv`. Usage:

    python -m emergence_jax.examples.make_olmo2_example PATH/TO/olmo2_7b_13b_checkpoints.csv
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from emergence_jax.records import write_records

RUN_NAMES = {"peteish7": "olmo2_7b", "peteish7-medlr": "olmo2_7b_medlr", "peteish13": "olmo2_13b", "peteish7-anneal-final": "olmo2_7b"}
# task -> (source column, evaluation examples, chance). MMLU test: 14,042 questions; ARC-Challenge
# test 1,172; ARC-Easy test 2,376; CommonsenseQA validation 1,221.
TASKS = {
    "mmlu_mc": ("mmlu_test_wavg_mc_acc", 14042, 0.25),
    "mmlu_rc": ("mmlu_test_wavg_rc_acc", 14042, 0.25),
    "arc_challenge_mc": ("arc_challenge_test_mc_acc", 1172, 0.25),
    "arc_challenge_rc": ("arc_challenge_test_rc_acc", 1172, 0.25),
    "arc_easy_mc": ("arc_easy_test_mc_acc", 2376, 0.25),
    "arc_easy_rc": ("arc_easy_test_rc_acc", 2376, 0.25),
    "csqa_mc": ("csqa_val_mc_acc", 1221, 0.2),
    "csqa_rc": ("csqa_val_rc_acc", 1221, 0.2),
}
# RC tasks also carry the probability of the correct choice (the source's soft log-probability).
SOFT_LOG = {"arc_challenge_rc": "arc_challenge_test_rc_soft_log", "arc_easy_rc": "arc_easy_test_rc_soft_log", "csqa_rc": "csqa_val_rc_soft_log"}


def convert(source: Path) -> list[dict]:
    rows = []
    for raw in csv.DictReader(source.open()):
        checkpoint = f"step{raw['step']}" if raw["step"] else "anneal-final"
        for task, (column, n_eval, chance) in TASKS.items():
            if not raw[column]:
                continue
            row = {
                "model": f"{RUN_NAMES[raw['run']]}@{checkpoint}",
                "pretrain_loss": float(raw["loss_c4_en"]),
                "train_examples": 0,
                "shots": 5,
                "accuracy": float(raw[column]),
                "n_eval": n_eval,
                "chance": chance,
                "task": task,
                "metric": "accuracy",
                "loss_corpus": "c4_en",
                "params": float(raw["n_params"]),
                "tokens": float(raw["tokens"]),
                "flops": float(raw["train_flops"]),
            }
            if raw["step"]:
                row["step"] = int(raw["step"])
            if task in SOFT_LOG and raw[SOFT_LOG[task]]:
                row["correct_prob"] = math.exp(float(raw[SOFT_LOG[task]]))
            rows.append(row)
    return rows


if __name__ == "__main__":
    write_records(Path(__file__).with_name("olmo2_fewshot.csv"), convert(Path(sys.argv[1])))
