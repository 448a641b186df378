"""`emergence-jax obsscale`: the observational scaling baseline (no finetuning) and its FLOPs-cutoff
backtest; beside it, where the data also hold a finetuning sweep, the emergence law's backtest."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from emergence_jax.obsscale import DEFAULT_BENCHMARKS, DEFAULT_CUTOFF_FLOPS, MEASURES

    parser.add_argument("--results", metavar="FILE", help="per-model table (model, model_family, train_flops_1e21 or flops, benchmark columns) or results records; default: the bundled ObsScaling public-model table (emergence_jax/examples/obsscaling_public_models.csv)")
    parser.add_argument("--target", required=True, help="the column (task) to predict, e.g. bb_arithmetic_2dm_2_acc or gsm8k_5shot; for results records a task name (task:metric when several metrics)")
    parser.add_argument("--measure", choices=MEASURES, default="pca", help="capability measure: pca (principal components of benchmark scores, default) or flops (log10 training FLOPs, offset per family)")
    parser.add_argument("--benchmarks", nargs="+", metavar="COLUMN", help=f"benchmark columns for --measure pca (default: {' '.join(DEFAULT_BENCHMARKS)}; the target is left out)")
    parser.add_argument("--components", type=int, default=3, help="principal components kept (default 3)")
    parser.add_argument("--flops-cutoff", type=float, default=DEFAULT_CUTOFF_FLOPS, help=f"fit models with training FLOPs <= this, predict the rest (default {DEFAULT_CUTOFF_FLOPS:g})")
    parser.add_argument("--chance", type=float, help="the target's chance accuracy (default: the records' chance, or 0 for a per-model table)")
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from emergence_jax.errors import UserError
    from emergence_jax.io import write_json
    from emergence_jax.laws.options import example_path
    from emergence_jax.obsscale import backtest, read_table

    path = args.results or str(example_path("obsscaling_public_models.csv"))
    table, records = read_table(path)
    chance = args.chance
    if chance is None:
        task = args.target.partition(":")[0]
        chances = [r["chance"] for r in records or [] if r.get("task", "task") == task]
        chance = float(np.median(chances)) if chances else 0.0
    if not 0.0 <= chance < 1.0:
        raise UserError(f"--chance must be in [0, 1), got {chance}")
    if args.components < 1:
        raise UserError(f"--components must be at least 1, got {args.components}")
    result = backtest(table, args.target, measure=args.measure, cutoff=args.flops_cutoff, chance=chance, benchmarks=args.benchmarks, components=args.components, records=records)
    result["results"] = path
    if records is not None:
        result["emergence_law"] = _emergence_law_beside(records, args)
    if args.json:
        write_json(args.json, result)
    _print(result)
    return 0


def _emergence_law_beside(records: list[dict], args) -> dict | None:
    """The emergence law's backtest (maximum likelihood, the `backtest` command's protocol) with the
    same held-out checkpoints (FLOPs above the cutoff), when the rows hold a finetuning sweep."""
    import numpy as np

    from emergence_jax.errors import UserError
    from emergence_jax.laws.backtest import BacktestSettings, run_backtest
    from emergence_jax.laws.fit import SamplerSettings
    from emergence_jax.laws.sweep import sweep_from_records

    task, _, metric = args.target.partition(":")
    rows = [r for r in records if r.get("task", "task") == task and (not metric or r.get("metric") == metric)]
    if not any(r["train_examples"] > 0 for r in rows):
        return None
    sweep = sweep_from_records(rows)
    models = np.unique(sweep.models)
    flops = {m: np.nanmax(sweep.flops[sweep.models == m]) for m in models}
    holdout = sum(1 for m in models if flops[m] > args.flops_cutoff)
    try:
        result = run_backtest(sweep, BacktestSettings(holdout=holdout, order_by="flops", method="mle", ablations=False), SamplerSettings(progress=False))
    except UserError as err:
        return {"skipped": str(err)}
    return {"method": "mle", "held_out": result["held_out"], "true_fewshot_emergence_loss": result["true_fewshot_emergence_loss"], "predicted": result["main"]["median"], "error_nats": result["main"]["error_nats"]}


def _print(result: dict) -> None:
    measure = result["measure"] + (f" ({result['components']} PCs of {', '.join(result['benchmarks'])})" if result["measure"] == "pca" else " (log10 FLOPs, offset per family)")
    print(f"target {result['target']} (chance {result['chance']:g}); measure {measure}")
    print(f"fitted on {result['n_fit']} models with FLOPs <= {result['flops_cutoff']:.3g}, predicting {result['n_heldout']} above it")
    print(f"{'model':44s} {'FLOPs':>9s} {'actual':>7s} {'predicted':>9s}")
    for p in sorted(result["predictions"], key=lambda p: p["flops"]):
        print(f"{p['model'][:44]:44s} {p['flops']:9.2e} {p['actual']:7.3f} {p['predicted']:9.3f}")
    print(f"held-out accuracy error: MAE {result['heldout_mae']:.3f}, RMSE {result['heldout_rmse']:.3f}")
    for family, entry in (result.get("emergence_point") or {}).items():
        truth = entry["truth"]
        where = f"{truth['low']:.4f}-{truth['high']:.4f}" if truth["status"] == "located" else truth["status"]
        if entry["predicted_emergence_loss"] is not None:
            predicted = f"{entry['predicted_emergence_loss']:.4f}"
        else:
            predicted = "no point (needs --measure flops)" if result["measure"] != "flops" else "none (the fitted curve does not rise with compute)"
        error = f", error {entry['error_nats']:.4f} nats" if "error_nats" in entry else ""
        kind = {True: "a forecast: the first emerged checkpoint is above the cutoff", False: "not a forecast: the fitted models include emerged checkpoints", None: "no checkpoint has emerged"}[entry["truth_beyond_cutoff"]]
        print(f"{family}: observed emergence loss {where}; obsscale predicts {predicted}{error} ({kind})")
    law = result.get("emergence_law")
    if law and "error_nats" in law:
        print(f"emergence law (finetuning, MLE) on the same split: predicted {law['predicted']:.4f} vs truth {law['true_fewshot_emergence_loss']:.4f}: error {law['error_nats']:.4f} nats")
    elif law:
        print(f"emergence law not run: {law['skipped']}")
