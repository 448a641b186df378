"""`emergence-jax threshold`: Du et al.'s loss-threshold analysis on any metric column."""

from __future__ import annotations

import argparse

from emergence_jax.errors import UserError
from emergence_jax.io import to_json_text
from emergence_jax.laws.options import example_path, filter_models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", nargs="+", metavar="FILE", help="results records (default: the bundled OLMo 2 few-shot checkpoints)")
    parser.add_argument("--task", nargs="+", help="tasks to analyse (default: every task in the files)")
    parser.add_argument("--column", nargs="+", default=["accuracy"], help="metric columns to compare, e.g. accuracy correct_prob brier (default: accuracy)")
    parser.add_argument("--models", metavar="REGEX", help="keep only rows whose 'model' matches this regular expression")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from emergence_jax.laws.threshold import loss_threshold
    from emergence_jax.records import read_records

    paths = args.results or [str(example_path("olmo2_fewshot.csv"))]
    rows = filter_models(read_records(paths), args.models, source=", ".join(paths))
    rows = [r for r in rows if r["train_examples"] == 0]
    tasks = args.task or sorted({r.get("task", "") for r in rows})
    results = []
    for task in tasks:
        task_rows = [r for r in rows if r.get("task", "") == task]
        if not task_rows:
            raise UserError(f"no few-shot rows for task {task!r}")
        for column in args.column:
            with_value = [r for r in task_rows if column in r]
            if not with_value:
                continue
            loss = np.array([r["pretrain_loss"] for r in with_value])
            value = np.array([float(r[column]) for r in with_value])
            results.append({"task": task, "column": column, **loss_threshold(loss, value)})
    if not results:
        raise UserError(f"none of the columns {', '.join(args.column)} has values in the selected rows")
    if args.json:
        print(to_json_text(results, indent=2))
        return 0
    print(f"{'task':<20} {'column':<14} {'threshold':>9} {'base':>7} {'slope':>8} {'R2':>6} {'dAIC vs line':>12}")
    for r in results:
        print(f"{r['task']:<20} {r['column']:<14} {r['threshold_loss']:9.4f} {r['base']:7.3f} {r['slope']:8.3f} {r['r2']:6.3f} {r['delta_aic_vs_line']:12.1f}")
    return 0
