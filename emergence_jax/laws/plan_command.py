"""`emergence-jax plan`: the next finetuning runs to do, chosen by expected information per cost."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from emergence_jax.laws.options import add_law_arguments, add_sampler_arguments, add_sweep_arguments
    from emergence_jax.laws.plan import DEFAULT_MAX_DRAWS

    add_sweep_arguments(parser, default_help="(required) the runs done so far")
    parser.add_argument("--candidates", required=True, metavar="FILE", help="CSV of possible runs: model,pretrain_loss,train_examples[,cost,n_eval]; cost in any unit (default: D); runs already in --results are skipped")
    parser.add_argument("--budget", type=int, metavar="N", help="number of runs to choose")
    parser.add_argument("--cost-budget", type=float, metavar="COST", help="choose runs while their total cost stays within COST (with or instead of --budget)")
    parser.add_argument("--out", required=True, metavar="FILE", help="plan.json to write")
    parser.add_argument("--max-draws", type=int, default=DEFAULT_MAX_DRAWS, help=f"posterior draws over which the expected width is averaged (default {DEFAULT_MAX_DRAWS})")
    add_law_arguments(parser)
    add_sampler_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from emergence_jax.errors import UserError
    from emergence_jax.io import write_json
    from emergence_jax.laws.options import load_sweep, sampler_settings
    from emergence_jax.laws.plan import plan_runs, read_candidates
    from emergence_jax.records import read_records

    if not args.results:
        raise UserError("--results: give the results records of the runs done so far")
    if args.budget is None and args.cost_budget is None:
        raise UserError("give --budget N (runs) or --cost-budget COST")
    if args.budget is not None and args.budget < 1:
        raise UserError(f"--budget must be at least 1 run, got {args.budget}")
    if args.max_draws < 100:
        raise UserError(f"--max-draws must be >= 100, got {args.max_draws}")
    sweep, paths = load_sweep(args, [])
    sampler = sampler_settings(args)
    done = read_records(paths)
    finetuned = sweep.train_examples > 0
    n_eval = int(np.median(sweep.n_eval[finetuned] if finetuned.any() else sweep.n_eval))
    candidates, skipped = read_candidates(args.candidates, done=done, n_eval=n_eval, chance=float(np.median(sweep.chance)), shots=int(np.median(sweep.shots)))

    print(f"Fitting {sweep.n_rows} rows, then planning over {len(candidates)} candidate runs ({len(skipped)} already done)", file=sys.stderr)
    plan = plan_runs(fit_sweep(sweep, args, sampler), candidates, budget=args.budget, cost_budget=args.cost_budget, max_draws=args.max_draws, seed=args.seed)
    plan.update(results=paths, candidates=args.candidates, skipped=skipped, unit=getattr(args, "loss_unit", "nats"))
    write_json(args.out, plan)
    print_plan(plan)
    print(f"wrote {args.out}")
    return 0


def fit_sweep(sweep, args, sampler):
    """The emergence-law fit `plan` reweights (the same settings as `fit`; model checks off)."""
    from emergence_jax.laws.fit import fit_emergence_law

    return fit_emergence_law(sweep, form=args.form, law=args.law, D0=args.D0, likelihood=args.likelihood, floor_shift=args.floor_shift, sampler=sampler, loss_unit=args.loss_unit, checks=False)


def print_plan(plan: dict) -> None:
    unit = plan.get("unit", "nats")
    print(f"current 90% width of the few-shot emergence loss: {plan['current_width']:.4f} {unit}")
    print(f"{'#':>2s} {'model':36s} {'D':>7s} {'loss':>8s} {'cost':>9s} {'width after':>12s}")
    for i, run in enumerate(plan["runs"], start=1):
        print(f"{i:2d} {run['model'][:36]:36s} {run['train_examples']:7d} {run['pretrain_loss']:8.4f} {run['cost']:9.4g} {run['expected_width_after']:12.4f}")
    print(f"expected width after these {len(plan['runs'])} runs: {plan['expected_width_after']:.4f} {unit} (total cost {plan['total_cost']:.4g})")
