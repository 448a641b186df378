"""`emergence-jax sweep --config configs/sweep_*.yaml [--set key=value ...]`.

Expands the config's grid (checkpoints × tasks × D × seeds × shots) into pretraining-loss,
few-shot and finetuning jobs, runs those not yet done, appends every row to
`output_dir/<records>` and prints a progress table. Run it again after any interruption: done jobs
are skipped, an interrupted finetuning run resumes from its checkpoint, and no row is written twice.
Exit code 143 means a finetuning job was preempted (SIGTERM) after saving; run the same command again.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="sweep config (YAML), e.g. configs/sweep_tiny.yaml or configs/paper/open_llama_v1_mmlu.yaml")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set output_dir=gs://bucket/run1 (repeatable)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list the jobs and which are done; run nothing")
    parser.add_argument("--keep-going", action="store_true", help="after a job crashes, go on with the others (exit code 1 at the end)")
    parser.add_argument("--no-progress", action="store_true", help="no per-job progress bars (the table is still printed)")
    from emergence_jax.sweep.adaptive import add_arguments as add_adaptive_arguments

    add_adaptive_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from emergence_jax.config import load_config
    from emergence_jax.sweep.config import SweepConfig
    from emergence_jax.sweep.runner import run_sweep

    config = load_config(SweepConfig, args.config, args.set)
    if args.adaptive and not args.dry_run:
        from emergence_jax.sweep.adaptive import run_adaptive, settings_from_args

        return run_adaptive(config, source=args.config, settings=settings_from_args(args), progress=not args.no_progress, keep_going=args.keep_going)
    return run_sweep(config, source=args.config, progress=not args.no_progress, keep_going=args.keep_going, dry_run=args.dry_run)
