"""`emergence-jax bench NAME`: throughput of one part of the project beside a reference, same run.

Each benchmark module defines `add_arguments(parser)` and `run(args)` and prints a table whose
last column is the ratio to the reference (higher is better). Machines are noisy: quote ratios.
"""

from __future__ import annotations

import argparse
import importlib

# name -> (module path, one-line help). Add a line here to add a benchmark.
BENCHES: dict[str, tuple[str, str]] = {
    "eval": ("emergence_jax.bench.eval", "multiple-choice scoring tokens/s on CPU, beside transformers/PyTorch"),
    "fit": ("emergence_jax.bench.fit", "maximum likelihood and NUTS on 200 rows, beside scipy.optimize.curve_fit"),
    "train": ("emergence_jax.bench.train", "finetuning train-step tokens/s on CPU beside a transformers/PyTorch step of the same config"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest="bench", metavar="NAME", required=True)
    for name, (module_path, help_text) in BENCHES.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_bench_module=module_path)
        importlib.import_module(module_path).add_arguments(sub)


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(args._bench_module).run(args)
