"""`emergence-jax compare --fits DIR_A DIR_B`: P(family A emerges before family B), from two fits."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fits", nargs=2, required=True, metavar=("DIR_A", "DIR_B"), help="two folders written by `emergence-jax fit --out DIR` (same loss corpus and unit)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (keys p_a_before_b, difference{median,q05,q95}, unit, E0_a, E0_b, ...)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draw pairs behind the difference's quantiles (default 0)")


def run(args: argparse.Namespace) -> int:
    from emergence_jax.io import to_json_text
    from emergence_jax.laws.compare import compare_fits

    result = compare_fits(*args.fits, seed=args.seed)
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(to_json_text(result))
        return 0
    unit, diff = result["unit"], result["difference"]
    for label, key in (("A", "E0_a"), ("B", "E0_b")):
        E0 = result[key]
        print(f"{label}: {result['fit_' + label.lower()]}  few-shot emergence loss {E0['median']:.4f} {unit} (90% interval {E0['q05']:.4f}-{E0['q95']:.4f})")
    print(f"P(A emerges before B, i.e. at a higher loss) = {result['p_a_before_b']:.3f}")
    print(f"E0_A - E0_B = {diff['median']:+.4f} {unit} (90% interval {diff['q05']:+.4f} to {diff['q95']:+.4f})")
    return 0
