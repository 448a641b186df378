"""`emergence-jax bench calibration`: the simulation-based calibration study of the default fit
over the misspecification grid of `laws.calibration` (generating form × over-dispersion × loss
unit × data amount), ≥ 200 simulated sweeps by default (36 cells × 6). Prints the table of
coverage of the 90% interval, mean error (nats) and median width per cell, the targets, and the
wall time with the machine's load average. With `--out FILE`, every finished sweep is appended to
`FILE.partial.jsonl` at once; rerunning the same command after an interruption keeps those and
fits only the rest, and the journal is removed when FILE is written."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--per-cell", type=int, default=6, help="simulated sweeps per grid cell (default 6: 216 sweeps)")
    parser.add_argument("--amounts", nargs="+", choices=("small", "large"), default=["small", "large"], help="data amounts to include (default both)")
    parser.add_argument("--chains", type=int, default=4, help="NUTS chains per form (default 4)")
    parser.add_argument("--warmup", type=int, default=500, help="NUTS warmup per chain (default 500)")
    parser.add_argument("--samples", type=int, default=500, help="NUTS draws per chain (default 500)")
    parser.add_argument("--out", metavar="FILE", help="write every sweep's result and the summary as JSON (resumable: sweeps are journalled to FILE.partial.jsonl as they finish)")


def run(args: argparse.Namespace) -> int:
    from emergence_jax.io import write_json
    from emergence_jax.laws.calibration import grid, run_study
    from emergence_jax.laws.fit import SamplerSettings

    sampler = SamplerSettings(chains=args.chains, warmup=args.warmup, samples=args.samples, progress=False)
    cells = grid(tuple(args.amounts))
    total = len(cells) * args.per_cell
    settings = {"chains": args.chains, "warmup": args.warmup, "samples": args.samples}
    journal = Path(args.out + ".partial.jsonl") if args.out else None
    done = _read_journal(journal, settings) if journal else []
    if done:
        print(f"resuming: {len(done)} sweeps already fitted in {journal}", flush=True)
    load_before = os.getloadavg()
    start = time.perf_counter()
    count = [len(done)]

    def progress(result):
        count[0] += 1
        if journal:
            _append_journal(journal, settings, result)
        print(f"[{count[0]}/{total}] {result['cell']:<28} truth {result['truth']:.4f}  median {result['median']:.4f}  90% {result['q05']:.4f}-{result['q95']:.4f}  {'covered' if result['covered'] else 'MISSED'}  {result['seconds']:.1f}s", flush=True)

    study = run_study(cells, args.per_cell, sampler, progress=progress, done=done)
    seconds = time.perf_counter() - start + sum(r["seconds"] for r in done)
    summary = study["summary"]
    print(f"\n{summary['sweeps']} simulated sweeps in {seconds / 60:.1f} min on {os.cpu_count()} cores (load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f})")
    print(f"{'cell':<30} {'sweeps':>6} {'coverage':>9} {'mean error (nats)':>18} {'median width':>13}")
    for label, cell in summary["cells"].items():
        print(f"{label:<30} {cell['sweeps']:6d} {cell['coverage']:9.0%} {cell['mean_error']:+18.4f} {cell['median_width']:13.4f}")
    print(f"{'overall':<30} {summary['sweeps']:6d} {summary['coverage']:9.0%} {summary['mean_error']:+18.4f} {summary['median_width']:13.4f}")
    print("targets: " + ", ".join(f"{name} {'met' if ok else 'NOT met'}" for name, ok in summary["targets"].items()))
    if args.out:
        write_json(args.out, {**study, "settings": settings, "seconds": seconds})
        journal.unlink(missing_ok=True)
    return 0


def _journal_header(settings: dict) -> str:
    return json.dumps({"calibration_study_journal": settings}, sort_keys=True)


def _read_journal(journal: Path, settings: dict) -> list[dict]:
    """The sweeps an interrupted run with the same settings finished (a partial last line, from a
    kill mid-write, is dropped)."""
    from emergence_jax.errors import UserError
    from emergence_jax.io import loads_json, read_text

    if not journal.exists():
        return []
    lines = read_text(journal, what="calibration journal").split("\n")
    if lines[0] != _journal_header(settings):
        raise UserError(f"{journal}: written by a run with other settings ({lines[0][:120]}); rerun with those settings, or delete it to start over")
    complete = lines[1:-1]  # the text after the last newline is empty or an unfinished line
    return [loads_json(line, source=str(journal), line=number) for number, line in enumerate(complete, start=2) if line]


def _append_journal(journal: Path, settings: dict, result: dict) -> None:
    from emergence_jax.io import append_lines, to_json_text
    from emergence_jax.records import _complete_line

    append_lines(journal, [to_json_text(result, indent=None)], is_complete=lambda line: _complete_line(line, "jsonl", None), header=_journal_header(settings))
