"""`emergence-jax import lm-eval DIR… --loss-from FILE --out FILE`: harness output -> results records."""

from __future__ import annotations

import argparse
import sys

SOURCES = {"lm-eval": "lm-evaluation-harness output folders (results_*.json, samples_*.jsonl when present)"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from emergence_jax.imports.lm_eval import ACCURACY_METRICS

    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    lm_eval = sources.add_parser("lm-eval", help=SOURCES["lm-eval"], description=SOURCES["lm-eval"])
    lm_eval.add_argument("paths", nargs="+", metavar="DIR", help="folders given to lm_eval --output_path (searched recursively for results_*.json), or results files")
    lm_eval.add_argument("--loss-from", required=True, metavar="FILE", help="CSV mapping model id -> pretraining loss: columns model,pretrain_loss[,loss_corpus,train_examples,seed,params,tokens,flops,step]; model is '<pretrained>@<revision>', '<pretrained>' or the harness model_name")
    lm_eval.add_argument("--out", required=True, metavar="FILE", help="results records to write (.csv or .jsonl), loadable by `emergence-jax fit`")
    lm_eval.add_argument("--metrics", nargs="+", default=list(ACCURACY_METRICS), metavar="NAME", help=f"harness metrics to import (per-example 0/1 scores; default: {' '.join(ACCURACY_METRICS)})")
    lm_eval.add_argument("--chance", action="append", metavar="TASK=VALUE", help="chance accuracy of a task the files do not determine (multiple choice without a literal choice list or samples file); repeatable")


def run(args: argparse.Namespace) -> int:
    from collections import Counter

    from emergence_jax.imports.lm_eval import import_lm_eval
    from emergence_jax.records import write_records

    rows, skipped = import_lm_eval(args.paths, args.loss_from, metrics=tuple(args.metrics), chance=args.chance)
    write_records(args.out, rows)
    tasks = Counter((row["task"], row["metric"]) for row in rows)
    print(f"wrote {len(rows)} rows ({len({row['model'] for row in rows})} models) to {args.out}")
    print(f"{'task':32s} {'metric':28s} rows")
    for (task, metric), count in sorted(tasks.items()):
        print(f"{task:32s} {metric:28s} {count}")
    if skipped:
        print(f"not imported (not per-example accuracies): {', '.join(sorted(skipped))}", file=sys.stderr)
    return 0
