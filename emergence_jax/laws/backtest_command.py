"""`emergence-jax backtest`: the paper's validation protocol on a finetuning sweep."""

from __future__ import annotations

import argparse
import sys

from emergence_jax.laws.options import add_law_arguments, add_sampler_arguments, add_sweep_arguments, load_sweep, sampler_settings

DEFAULT_FILES = ["simulated_sweep.csv", "simulated_heldout.csv"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sweep_arguments(parser, default_help="the bundled simulated sweep plus its held-out stronger checkpoints")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder for backtest.json")
    parser.add_argument("--holdout", type=int, default=2, help="number of strongest checkpoints to hold out (default 2)")
    parser.add_argument("--order-by", choices=("loss", "flops"), default="loss", help="how to rank checkpoints from weakest to strongest (default: pretraining loss)")
    parser.add_argument("--method", choices=("nuts", "mle"), default="nuts", help="nuts: posterior with a 90%% interval (default); mle: point estimates only, fast")
    parser.add_argument("--no-ablations", action="store_true", help="skip the ablations (drop smallest/largest D, one subset per D)")
    add_law_arguments(parser)
    add_sampler_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from emergence_jax.laws.backtest import BacktestSettings, run_backtest
    from emergence_jax.io import write_json
    from emergence_jax.laws.outputs import staged_output_dir

    if not args.results:
        print("No --results given: backtesting on the bundled simulated sweep.", file=sys.stderr)
    sweep, paths = load_sweep(args, DEFAULT_FILES)
    settings = BacktestSettings(
        holdout=args.holdout, order_by=args.order_by, method=args.method, form=args.form, law=args.law, D0=args.D0, likelihood=args.likelihood, ablations=not args.no_ablations,
        loss_unit=args.loss_unit,
    )
    result = {"results": paths, **run_backtest(sweep, settings, sampler_settings(args))}
    with staged_output_dir(args.out) as staging:
        write_json(staging / "backtest.json", result)

    unit = result["loss_unit"]
    print(f"true few-shot emergence loss: {result['true_fewshot_emergence_loss']:.4f} {unit} ({result['truth_form']} form, all few-shot rows)")
    free = result["model_free_truth"]
    if free["status"] == "located":
        print(f"model-free truth: between {free['low']:.4f} and {free['high']:.4f} {unit} ({free['previous']['model']} -> {free['first_emerged']['model']}, first checkpoint >= {free['sigmas']:g} SE above chance)")
    elif free["status"] == "beyond_data":
        print(f"model-free truth: not emerged in the data; emergence needs loss below {free['upper_bound']:.4f} {unit}")
    else:
        print(f"model-free truth: already emerged at the weakest checkpoint (loss {free['low']:.4f} {unit})")
    print(f"held out: {', '.join(result['held_out'])}")
    ahead = result["flops_ahead"]
    print(f"prediction reaches {ahead:.2f}x the FLOPs of the strongest fitted checkpoint" if ahead else "FLOPs ahead: unknown (no 'flops' column)")
    print(f"{'variant':<18} {'form':<9} {'predicted (' + unit + ')':>15} {'90% interval':>17} {'error (nats)':>12} {'success':>8} {'in 90%':>7} {'in bracket':>10}")
    for name, score in [("main", result["main"]), *result["ablations"].items()]:
        if score["median"] is None:
            print(f"{name:<18} {score['form']:<9} not emerged in the fitted rows; emergence needs loss below {score['upper_bound']:.4f} {unit}")
            continue
        interval = f"{score['q05']:.4f}-{score['q95']:.4f}" if score["q05"] is not None else "-"
        inside = "-" if score["within_interval"] is None else ("yes" if score["within_interval"] else "no")
        bracket = "-" if score["within_model_free_bracket"] is None else ("yes" if score["within_model_free_bracket"] else "no")
        print(f"{name:<18} {score['form']:<9} {score['median']:15.4f} {interval:>17} {score['error_nats']:12.4f} {'yes' if score['success'] else 'no':>8} {inside:>7} {bracket:>10}")
    print(f"wrote {args.out}/backtest.json")
    return 0
