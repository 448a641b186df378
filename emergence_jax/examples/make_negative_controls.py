"""Build the two bundled negative-control files (MMLU at chance) from the shared validation tables.

    python -m emergence_jax.examples.make_negative_controls /path/to/validation_data

- `pythia_mmlu_negative_control.csv`: Pythia 70M, 160M and 410M (standard, deduped and batch-size
  variants), every intermediate checkpoint evaluated 5-shot on MMLU (micro accuracy over 14,042
  questions). Source: EleutherAI/pythia @ a19eecb (Apache-2.0), lm-eval-harness results. The Pile
  loss per checkpoint is not published, so `pretrain_loss` is a loss-like proxy: ln of the
  LAMBADA-OpenAI last-word perplexity (nats per word, `loss_corpus` = lambada_openai_word). Step-0
  rows are left out (their LAMBADA perplexity is that of an untrained model, ~3.7e6).
- `gadre_mmlu0shot_negative_control.csv`: the 104 final models of Gadre et al. 2024 (11M–6.9B,
  0.25–32x Chinchilla), MMLU 0-shot accuracy (14,042 questions) against C4 validation loss
  (nats/token). Source: mlfoundations/scaling @ a003c49 (MIT).

Numbers only are copied; rows are in the project's results format (DESIGN.md §4), chance 0.25.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ["model", "pretrain_loss", "train_examples", "shots", "accuracy", "n_eval", "chance", "task", "metric", "loss_corpus", "params", "flops"]


def _write(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {path}")


def main(source: str) -> None:
    source_dir = Path(source)
    rows = []
    with (source_dir / "pythia_checkpoints_lm_eval.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["size"] not in ("70m", "160m", "410m") or row["num_fewshot"] != "5" or int(row["step"]) == 0 or not row["mmlu_micro_acc"]:
                continue
            rows.append({
                "model": f"{row['model']}@step{row['step']}", "pretrain_loss": round(math.log(float(row["lambada_openai_ppl"])), 6),
                "train_examples": 0, "shots": 5, "accuracy": row["mmlu_micro_acc"], "n_eval": 14042, "chance": 0.25,
                "task": "mmlu", "metric": "accuracy", "loss_corpus": "lambada_openai_word", "params": row["params_total"], "flops": row["flops_6ND"],
            })
    _write(HERE / "pythia_mmlu_negative_control.csv", rows)
    rows = []
    with (source_dir / "gadre2024_overtraining_loss_vs_downstream.csv").open() as handle:
        for row in csv.DictReader(handle):
            rows.append({
                "model": row["name"], "pretrain_loss": row["loss_c4_val"], "train_examples": 0, "shots": 0, "accuracy": row["mmlu_zeroshot"],
                "n_eval": 14042, "chance": 0.25, "task": "mmlu_zeroshot", "metric": "accuracy", "loss_corpus": "c4_val", "params": row["params"], "flops": row["flops_6ND"],
            })
    _write(HERE / "gadre_mmlu0shot_negative_control.csv", rows)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/validation_data")
