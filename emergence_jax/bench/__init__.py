"""`emergence-jax bench NAME`: throughput of one part of the project beside a reference, same run.

Each benchmark module defines `add_arguments(parser)` (its own flags) and `measure(args, bench)`,
which times its work through `bench.compare(...)` (`emergence_jax.bench.harness`: interleaved
rounds after a warm-up, equal threads on both sides, median/min/max and the ratio of medians,
warnings when the machine looks loaded). `--json [FILE]` gives
`{"bench", "measurements": [{"name", "ours", "reference", "unit", "ratio", ...}], "environment"}`.

`emergence-jax bench all --json FILE` runs every timing bench into one file; `emergence-jax bench
table FILE` turns such a file into the README's Markdown speed table. `bench memory` is not a
timing bench: it compiles the train and evaluation steps for a target mesh and prints per-device bytes.
"""

from __future__ import annotations

import argparse
import importlib

# name -> (module path, one-line help). Add a line here to add a benchmark.
BENCHES: dict[str, tuple[str, str]] = {
    "eval": ("emergence_jax.bench.eval", "multiple-choice scoring tokens/s on CPU, beside transformers/PyTorch"),
    "fit": ("emergence_jax.bench.fit", "maximum likelihood and NUTS on 200 rows, beside scipy.optimize.curve_fit"),
    "calibration": ("emergence_jax.bench.calibration", "simulation-based calibration of the default fit over a misspecification grid (>= 200 sweeps)"),
    "model": ("emergence_jax.bench.model", "LLaMA ~100M forward and batched greedy-decode tokens/s beside transformers/PyTorch"),
    "sample": ("emergence_jax.bench.sample", "sampled tokens/s (temperature 1, KV cache) beside transformers generate(do_sample=True)"),
    "train": ("emergence_jax.bench.train", "finetuning train-step tokens/s on CPU beside a transformers/PyTorch step of the same config"),
    "demo": ("emergence_jax.bench.demo", "wall time of `emergence-jax demo --quick` and of each of its stages (the main job's speed)"),
    "memory": ("emergence_jax.bench.memory", "per-device bytes of the train and evaluation steps of a preset on a mesh, compiled ahead of time"),
}
# Commands beside the benches: run them all, or tabulate their JSON.
EXTRA = {
    "all": "run every timing bench (not memory) with its defaults; --json FILE collects them in one file",
    "table": "the README's Markdown speed table from `bench all --json` files",
}
NOT_IN_ALL = ("memory", "calibration")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = "\n".join(f"  {name:<8} {help_text}" for name, (_, help_text) in {**BENCHES, **{k: ("", v) for k, v in EXTRA.items()}}.items())
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = f"benchmarks:\n{names}\n\n`emergence-jax bench NAME --help` lists a benchmark's own flags."
    parser.add_argument("name", choices=sorted([*BENCHES, *EXTRA]), metavar="NAME", help="which benchmark to run (see below)")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the benchmark's own flags")


def bench_parser(name: str) -> argparse.ArgumentParser:
    """The parser of bench `name`: its own flags plus the shared timing flags (not for `memory`)."""
    from emergence_jax.bench import harness

    module_path, help_text = BENCHES[name]
    module = importlib.import_module(module_path)
    parser = argparse.ArgumentParser(prog=f"emergence-jax bench {name}", description=help_text)
    module.add_arguments(parser)
    if hasattr(module, "measure"):
        harness.add_arguments(parser, rounds=getattr(module, "DEFAULT_ROUNDS", 5))
    return parser


def run_bench(name: str, args: argparse.Namespace) -> dict | None:
    """Run one bench; returns its JSON object (None for a bench without the harness)."""
    from emergence_jax.bench.harness import Bench

    module = importlib.import_module(BENCHES[name][0])
    if not hasattr(module, "measure"):
        return module.run(args)
    bench = Bench(name, args)
    module.measure(args, bench)
    return bench.report()


def run(args: argparse.Namespace) -> int:
    if args.name == "table":
        from emergence_jax.bench.table import main as table_main

        return table_main(args.options)
    if args.name == "all":
        return _run_all(args.options)
    result = run_bench(args.name, bench_parser(args.name).parse_args(args.options))
    return result if isinstance(result, int) else 0


def _run_all(options: list[str]) -> int:
    from emergence_jax.bench import harness
    from emergence_jax.io import to_json_text, write_json

    parser = argparse.ArgumentParser(prog="emergence-jax bench all", description=EXTRA["all"])
    harness.add_arguments(parser)
    shared = parser.parse_args(options)
    results = []
    for name in BENCHES:
        if name in NOT_IN_ALL:
            continue
        module = importlib.import_module(BENCHES[name][0])
        if not hasattr(module, "measure"):
            print(f"== bench {name}: skipped (not on the shared harness yet)", flush=True)
            continue
        print(f"== bench {name}", flush=True)
        args = bench_parser(name).parse_args([])
        args.threads, args.no_reference = shared.threads, shared.no_reference
        if "--rounds" in options or not hasattr(module, "DEFAULT_ROUNDS"):
            args.rounds = shared.rounds
        args.json = None
        results.append(run_bench(name, args))
    combined = {"benches": results, "environment": results[-1]["environment"] if results else {}}
    if shared.json == "-":
        print(to_json_text(combined))
    elif shared.json:
        write_json(shared.json, combined)
        print(f"wrote {shared.json}; make the README table with: emergence-jax bench table {shared.json}")
    return 0
