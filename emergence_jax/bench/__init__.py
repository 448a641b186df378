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
    "model": ("emergence_jax.bench.model", "LLaMA ~100M forward and batched greedy-decode tokens/s beside transformers/PyTorch"),
    "sample": ("emergence_jax.bench.sample", "sampled tokens/s (temperature 1, KV cache) beside transformers generate(do_sample=True)"),
    "train": ("emergence_jax.bench.train", "finetuning train-step tokens/s on CPU beside a transformers/PyTorch step of the same config"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = "\n".join(f"  {name:<8} {help_text}" for name, (_, help_text) in BENCHES.items())
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = f"benchmarks:\n{names}\n\n`emergence-jax bench NAME --help` lists a benchmark's own flags."
    parser.add_argument("name", choices=sorted(BENCHES), metavar="NAME", help="which benchmark to run (see below)")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own flags")


def run(args: argparse.Namespace) -> int:
    module_path, help_text = BENCHES[args.name]
    module = importlib.import_module(module_path)
    parser = argparse.ArgumentParser(prog=f"emergence-jax bench {args.name}", description=help_text)
    module.add_arguments(parser)
    return module.run(parser.parse_args(args.options))
