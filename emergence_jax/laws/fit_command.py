"""`emergence-jax fit`: fit the emergence law to results records and predict few-shot emergence."""

from __future__ import annotations

import argparse
import sys
import warnings

from emergence_jax.laws.options import add_law_arguments, add_sampler_arguments, add_sweep_arguments, load_sweep, sampler_settings

DEFAULT_FILES = ["simulated_sweep.csv"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_sweep_arguments(parser, default_help="the bundled simulated sweep (emergence_jax/examples/simulated_sweep.csv)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder: fit.json, posterior.nc (ArviZ InferenceData), fit.png, cdf.png, checks.png")
    add_law_arguments(parser)
    add_sampler_arguments(parser)
    parser.add_argument("--bootstrap", type=int, default=0, metavar="N", help="also report bootstrap intervals from N resamplings of the rows (maximum likelihood; default 0 = off)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from emergence_jax.laws.bootstrap import bootstrap_fit
    from emergence_jax.laws.checks import plot_checks
    from emergence_jax.laws.fit import fit_emergence_law, write_posterior
    from emergence_jax.laws.loss_scaling import fit_loss_scaling
    from emergence_jax.io import write_json
    from emergence_jax.laws.outputs import staged_output_dir
    from emergence_jax.laws.plots import plot_cdf, plot_fit
    from emergence_jax.laws.posterior import summarise

    if not args.results:
        print("No --results given: fitting the bundled simulated sweep (emergence_jax/examples/simulated_sweep.csv).", file=sys.stderr)
    sweep, paths = load_sweep(args, DEFAULT_FILES)
    sampler = sampler_settings(args)
    unit = args.loss_unit
    print(f"Fitting {sweep.n_rows} rows ({'finetuning sweep' if sweep.finetuned else 'few-shot rows only'}), form={args.form}, likelihood={args.likelihood}, losses in {unit}", file=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        fit = fit_emergence_law(sweep, form=args.form, law=args.law, D0=args.D0, likelihood=args.likelihood, floor_shift=args.floor_shift, sampler=sampler, loss_unit=unit)
    for warning in caught:  # sampler problems of forms with real weight; all are in fit.json
        message = str(warning.message)
        if any(f"NUTS diagnostics look bad for the {form} form" in message for form, weight in fit.weights.items() if weight >= 0.05):
            print(f"warning: {message}", file=sys.stderr)
    for problem in fit.checks["warnings"]:
        print(f"warning: model check: {problem}", file=sys.stderr)

    result = {"results": paths, "n_rows": sweep.n_rows, "chance": float(np.median(sweep.chance)), "loss_corpus": loss_corpus(paths, args), **fit.summary()}
    if np.unique(sweep.params[np.isfinite(sweep.params)]).size >= 3:
        scaling = fit_loss_scaling(sweep.params, sweep.loss)
        params_needed = scaling.params_at(fit.E0_draws())
        result["loss_scaling"] = {"irreducible": scaling.irreducible, "coefficient": scaling.coefficient, "exponent": scaling.exponent}
        result["fewshot_emergence_params"] = {**summarise(params_needed[np.isfinite(params_needed)]), "fraction_unreachable": float(np.mean(~np.isfinite(params_needed)))}
    if args.bootstrap:
        boot = bootstrap_fit(sweep, fit.spec, resamples=args.bootstrap, seed=args.seed, progress=sampler.progress)
        result["bootstrap"] = {"resamples": args.bootstrap, "fewshot_emergence_loss": boot["summary"]["E0"], "params": boot["summary"]}

    with staged_output_dir(args.out) as staging:
        write_json(staging / "fit.json", result)
        write_posterior(fit, staging / "posterior.nc")
        plot_fit(fit, sweep, staging / "fit.png")
        plot_cdf(fit, staging / "cdf.png")
        plot_checks(fit, staging / "checks.png")

    E0 = result["fewshot_emergence_loss"]
    weights = ", ".join(f"{form} {weight:.2f}" for form, weight in sorted(fit.weights.items(), key=lambda item: -item[1]))
    print(f"forms (stacking weights): {weights}   law: {result['law']}   D0: {fit.spec.D0:g}   likelihood: {fit.spec.likelihood}   loss unit: {unit}")
    if E0["status"] == "beyond_data":
        print(f"few-shot emergence: {E0['statement']}")
    else:
        print(f"few-shot emergence loss: {E0['median']:.4f} {unit} (90% interval {E0['q05']:.4f}-{E0['q95']:.4f} {unit}; MLE {E0['mle']:.4f} {unit}, {fit.spec.form} form)")
        for form, entry in E0["by_form"].items():
            print(f"  {form:<9} weight {entry['weight']:.2f}: {entry['median']:.4f} {unit} ({entry['q05']:.4f}-{entry['q95']:.4f})")
    diagnostics = result["diagnostics"]
    print(f"NUTS ({fit.spec.form}): {diagnostics['chains']} chains x {diagnostics['draws_per_chain']} draws, max R-hat {diagnostics['r_hat_max']:.3f}, min ESS {diagnostics['ess_min']:.0f}, divergences {diagnostics['divergences']} ({100 * diagnostics['divergence_fraction']:.2f}%)")
    print(f"model checks: {'passed' if fit.checks['passed'] else str(len(fit.checks['warnings'])) + ' warning(s), see fit.json model_checks'}")
    print(f"wrote {args.out}/fit.json, posterior.nc, fit.png, cdf.png, checks.png")
    return 0


def loss_corpus(paths: list[str], args: argparse.Namespace) -> str | list[str] | None:
    """The held-out corpus of the fitted rows' pretraining losses (their optional 'loss_corpus'
    column, after the --models/--task/--metric selection): one name, a sorted list when the rows
    mix corpora (with a warning: their losses are not on one axis), None when no row records it."""
    from emergence_jax.laws.options import filter_models
    from emergence_jax.records import read_records

    rows = filter_models(read_records(paths), args.models, source=", ".join(paths))
    rows = [row for row in rows if all(getattr(args, key) is None or row.get(key) == getattr(args, key) for key in ("task", "metric"))]
    corpora = sorted({row["loss_corpus"] for row in rows if row.get("loss_corpus")})
    if len(corpora) > 1:
        print(f"warning: the rows' pretraining losses are measured on {len(corpora)} corpora ({', '.join(corpora)}); losses on different corpora are not on one axis", file=sys.stderr)
    return corpora[0] if len(corpora) == 1 else (corpora or None)
