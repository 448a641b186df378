"""`emergence-jax study NAME`: simulation studies with known truth, too slow for the test suite.

- ``plan``: plan-chosen finetuning runs vs the full grid and vs random runs of the same cost
  (`laws.plan_study`).
- ``compare``: P(A emerges before B) for families 0.2 nats apart and for identical laws
  (`laws.compare.compare_study`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=("plan", "compare"), help="which study")
    parser.add_argument("--problems", type=int, default=20, help="plan: simulated problems (default 20); compare: repeats (default 20)")
    parser.add_argument("--chains", type=int, default=2, help="NUTS chains per fit (default 2)")
    parser.add_argument("--warmup", type=int, default=300, help="NUTS warmup per chain (default 300)")
    parser.add_argument("--samples", type=int, default=300, help="NUTS draws per chain (default 300)")
    parser.add_argument("--rounds", type=int, default=4, help="plan: planning rounds, each refitted on the runs so far (default 4)")
    parser.add_argument("--random-repeats", type=int, default=3, help="plan: random designs of plan's cost per problem (default 3)")
    parser.add_argument("--first", type=int, default=0, metavar="INDEX", help="plan: index of the first problem (run a study in parts; default 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", metavar="FILE", help="write every problem's result and the summary as JSON")


def run(args: argparse.Namespace) -> int:
    from emergence_jax.errors import UserError
    from emergence_jax.io import write_json

    if args.problems < 1 or args.chains < 1 or args.warmup < 1 or args.samples < 10 or args.first < 0:
        raise UserError("--problems, --chains, --warmup must be >= 1, --samples >= 10 and --first >= 0")
    if args.name == "compare":
        from emergence_jax.laws.compare import compare_study

        done = []

        def report(repeat):
            E0 = repeat["E0"]
            print(f"{repeat['repeat']:3d} {repeat['apart_0.2_nats']:8.3f} {repeat['identical']:9.3f}  " + "  ".join(f"{E0[k]['median']:.3f} ({E0[k]['q95'] - E0[k]['q05']:.3f})" for k in ("a", "b", "same_1", "same_2")), flush=True)
            done.append(repeat)
            if args.out:  # partial results, in case the study is stopped
                write_json(args.out, {"repeats": done})

        print(f"{'#':>3s} {'P apart':>8s} {'P same':>9s}  E0 median (90% width): A (truth 2.5), B (2.3), same (2.4) x2")
        result = compare_study(args.problems, chains=args.chains, warmup=args.warmup, samples=args.samples, seed=args.seed, progress=report)
        print(f"families 0.2 nats apart: P >= 0.95 in {100 * result['apart_0.2_nats']['share_p_ge_0.95']:.0f}% of {args.problems} repeats")
        print(f"identical laws: P in [0.2, 0.8] in {100 * result['identical']['share_in_0.2_0.8']:.0f}% of {args.problems} repeats (calibrated posteriors: P ~ Uniform(0, 1), 60% expected)")
    else:
        from emergence_jax.laws.plan_study import StudySettings, run_problem, summarise_study

        if args.rounds < 1 or args.random_repeats < 1:
            raise UserError("--rounds and --random-repeats must be >= 1")
        settings = StudySettings(problems=args.problems, chains=args.chains, warmup=args.warmup, samples=args.samples, seed=args.seed, rounds=args.rounds, random_repeats=args.random_repeats)
        problems = []
        print(f"{'#':>3s} {'start':>8s} {'full width':>10s} {'plan width':>10s} {'random (repeats)':>24s} {'plan cost':>9s} {'covers f/p/r':>12s} {'R-hat s/f/p/r':>20s} {'seconds':>8s}")
        for i in range(args.first, args.first + args.problems):
            r = run_problem(i, settings)
            problems.append(r)
            covers = "/".join("y" if r[a]["covers"] else "n" for a in ("full", "plan", "random"))
            randoms = " ".join(f"{x['width']:.4f}" for x in [r["random"], *r["random_repeats"]])
            r_hat = "/".join(f"{r[a]['r_hat_max']:.2f}" for a in ("start", "full", "plan", "random"))
            print(f"{i:3d} {r['start']['width']:8.4f} {r['full']['width']:10.4f} {r['plan']['width']:10.4f} {randoms:>24s} {r['plan']['cost'] / r['full']['cost']:9.2f} {covers:>12s} {r_hat:>20s} {r['seconds']:8.0f}", flush=True)
            if args.out:
                write_json(args.out, {"settings": dataclasses.asdict(settings), "problems": problems, "summary": summarise_study(problems)})
        result = {"settings": dataclasses.asdict(settings), "problems": problems, "summary": summarise_study(problems)}
        s = result["summary"]
        print(f"plan reaches the full grid's width in {100 * s['plan_reaches_full_width']:.0f}% of problems at a median {100 * s['plan_cost_fraction']:.0f}% of its cost (median plan/full width {s['plan_over_full_width_median']:.2f}); "
              f"beats random runs of the same cost in {100 * s['plan_beats_random']:.0f}% (first random design), {100 * s['plan_beats_random_draws']:.0f}% of all random designs, the median random design in {100 * s['plan_beats_random_median']:.0f}% (median plan/random width {s['plan_over_random_width_median_of_draws']:.2f})")
        print("90% interval coverage: " + ", ".join(f"{arm} {100 * v:.0f}%" for arm, v in s["coverage_90"].items()))
    if args.out:
        write_json(args.out, result)
    return 0
