"""Command-line options shared by `fit`, `predict`, `backtest` and `threshold`, in one place."""

from __future__ import annotations

import argparse
import re
from importlib import resources
from pathlib import Path

from emergence_jax.errors import UserError
from emergence_jax.laws.functions import EMERGENCE_LAWS, LIKELIHOODS, PERFORMANCE_FORMS

LOSS_UNIT_NAMES = ("nats", "bits")  # laws.fit.LOSS_UNITS gives their size in nats


def example_path(name: str) -> Path:
    """Path of a bundled example file (see emergence_jax/examples/README.md)."""
    return Path(str(resources.files("emergence_jax.examples").joinpath(name)))


def add_sweep_arguments(parser: argparse.ArgumentParser, *, default_help: str) -> None:
    parser.add_argument("--results", nargs="+", metavar="FILE", help=f"results records (CSV or JSONL, DESIGN §4). Default: {default_help}")
    parser.add_argument("--task", help="task to fit when the files hold several (the 'task' column)")
    parser.add_argument("--metric", help="metric to fit when the files hold several (the 'metric' column)")
    parser.add_argument("--models", metavar="REGEX", help="keep only rows whose 'model' matches this regular expression (e.g. '^olmo2_13b@')")


def add_law_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--form", choices=("auto", *PERFORMANCE_FORMS), default="auto", help="accuracy-vs-loss form; 'auto' fits all and combines them by PSIS-LOO stacking weights (default)")
    parser.add_argument("--law", choices=EMERGENCE_LAWS, default="log_power", help="emergence law E(D): k·(log D)^α + C (log_power, default) or k·D^α + C (power)")
    parser.add_argument("--D0", type=float, help="few-shot extrapolation point, in examples (default: the rows' number of shots)")
    parser.add_argument("--likelihood", choices=LIKELIHOODS, default="beta_binomial", help="beta_binomial (default: over-dispersion fitted, for real data) or binomial (only for simulated data with known binomial noise)")
    parser.add_argument("--loss-unit", choices=tuple(LOSS_UNIT_NAMES), default="nats", help="unit of the pretrain_loss column (default nats); every reported loss is in this unit")
    parser.add_argument("--floor-shift", action="store_true", help="fit Δ, a shift of the few-shot rows' floor away from chance (accuracy units)")


def add_sampler_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4; at least 4 for a meaningful R-hat)")
    parser.add_argument("--warmup", type=int, default=1000, help="NUTS warmup iterations per chain (default 1000)")
    parser.add_argument("--samples", type=int, default=1000, help="NUTS kept draws per chain (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for starts, chains and bootstrap (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide the per-form progress lines")


def sampler_settings(args):
    from emergence_jax.laws.fit import SamplerSettings

    for name in ("chains", "warmup", "samples"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(args, name)}")
    return SamplerSettings(chains=args.chains, warmup=args.warmup, samples=args.samples, seed=args.seed, progress=not args.no_progress)


def load_sweep(args, default_files: list[str]):
    """Read the results files named by --results (or the bundled default) into a `Sweep`."""
    from emergence_jax.laws.sweep import sweep_from_records
    from emergence_jax.records import read_records

    paths = args.results or [str(example_path(name)) for name in default_files]
    rows = filter_models(read_records(paths), args.models, source=", ".join(paths))
    return sweep_from_records(rows, task=args.task, metric=args.metric, source=", ".join(paths)), paths


def filter_models(rows: list[dict], models: str | None, *, source: str) -> list[dict]:
    """Rows whose 'model' matches the --models regular expression (all rows when it is None)."""
    if not models:
        return rows
    try:
        pattern = re.compile(models)
    except re.error as err:
        raise UserError(f"--models: not a regular expression ({err})") from None
    kept = [row for row in rows if pattern.search(row["model"])]
    if not kept:
        raise UserError(f"--models {models!r} matches no row's 'model' in {source}")
    return kept
