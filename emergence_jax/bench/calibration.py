"""`emergence-jax bench calibration`: the simulation-based calibration study of the default fit
over the misspecification grid of `laws.calibration` (generating form × over-dispersion × loss
unit × data amount), ≥ 200 simulated sweeps by default (36 cells × 6). Prints the table of
coverage of the 90% interval, mean error (nats) and median width per cell, the targets, and the
wall time with the machine's load average."""

from __future__ import annotations

import argparse
import os
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--per-cell", type=int, default=6, help="simulated sweeps per grid cell (default 6: 216 sweeps)")
    parser.add_argument("--amounts", nargs="+", choices=("small", "large"), default=["small", "large"], help="data amounts to include (default both)")
    parser.add_argument("--chains", type=int, default=4, help="NUTS chains per form (default 4)")
    parser.add_argument("--warmup", type=int, default=500, help="NUTS warmup per chain (default 500)")
    parser.add_argument("--samples", type=int, default=500, help="NUTS draws per chain (default 500)")
    parser.add_argument("--out", metavar="FILE", help="write every sweep's result and the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from emergence_jax.io import write_json
    from emergence_jax.laws.calibration import grid, run_study
    from emergence_jax.laws.fit import SamplerSettings

    sampler = SamplerSettings(chains=args.chains, warmup=args.warmup, samples=args.samples, progress=False)
    cells = grid(tuple(args.amounts))
    total = len(cells) * args.per_cell
    load_before = os.getloadavg()
    start = time.perf_counter()
    done = []

    def progress(result):
        done.append(result)
        print(f"[{len(done)}/{total}] {result['cell']:<28} truth {result['truth']:.4f}  median {result['median']:.4f}  90% {result['q05']:.4f}-{result['q95']:.4f}  {'covered' if result['covered'] else 'MISSED'}  {result['seconds']:.1f}s", flush=True)

    study = run_study(cells, args.per_cell, sampler, progress=progress)
    seconds = time.perf_counter() - start
    summary = study["summary"]
    print(f"\n{summary['sweeps']} simulated sweeps in {seconds / 60:.1f} min on {os.cpu_count()} cores (load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f})")
    print(f"{'cell':<30} {'sweeps':>6} {'coverage':>9} {'mean error (nats)':>18} {'median width':>13}")
    for label, cell in summary["cells"].items():
        print(f"{label:<30} {cell['sweeps']:6d} {cell['coverage']:9.0%} {cell['mean_error']:+18.4f} {cell['median_width']:13.4f}")
    print(f"{'overall':<30} {summary['sweeps']:6d} {summary['coverage']:9.0%} {summary['mean_error']:+18.4f} {summary['median_width']:13.4f}")
    print("targets: " + ", ".join(f"{name} {'met' if ok else 'NOT met'}" for name, ok in summary["targets"].items()))
    if args.out:
        write_json(args.out, {**study, "seconds": seconds})
    return 0
