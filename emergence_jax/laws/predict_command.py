"""`emergence-jax predict`: has a model at a given pretraining loss emerged, according to a fit?"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from emergence_jax.errors import UserError
from emergence_jax.io import to_json_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fit", required=True, metavar="DIR", help="folder written by `emergence-jax fit` (reads fit.json and posterior.nc)")
    parser.add_argument("--loss", required=True, type=float, nargs="+", metavar="L", help="pretraining loss(es) to ask about, per token on the fit's loss corpus, in --loss-unit")
    parser.add_argument("--loss-unit", choices=("nats", "bits"), default=None, help="unit of --loss (default: the fit's unit, recorded in fit.json); converted to the fit's unit")
    parser.add_argument("--chance", type=float, default=None, help="chance accuracy for the predicted few-shot accuracy (default: the fitted rows' chance)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def load_fit(fit_dir: Path):
    """(fit.json contents, posterior draws name -> 1-D array) from a fit folder. ``E0_combined``
    (the stacking mixture over forms) is included when the fit wrote it."""
    import arviz as az
    import numpy as np

    summary_path, posterior_path = fit_dir / "fit.json", fit_dir / "posterior.nc"
    for path in (summary_path, posterior_path):
        if not path.exists():
            raise UserError(f"{path}: not found; run `emergence-jax fit --out {fit_dir}` first")
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{summary_path}: not valid JSON ({err.msg}); rerun `emergence-jax fit`") from None
    missing = [key for key in ("spec", "params", "chance", "diagnostics", "fewshot_emergence_loss") if key not in summary]
    if missing:
        raise UserError(f"{summary_path}: missing field '{missing[0]}'; it was not written by this version of `emergence-jax fit`, rerun it")
    idata = az.from_netcdf(str(posterior_path))
    draws = {name: np.asarray(idata.posterior[name]).reshape(-1) for name in summary["params"]}
    if "E0_combined" in idata.posterior:
        draws["E0_combined"] = np.asarray(idata.posterior["E0_combined"]).reshape(-1)
    return summary, draws


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from emergence_jax.laws.functions import LawSpec, predicted_accuracy
    from emergence_jax.laws.posterior import probability_emerged, summarise

    summary, draws = load_fit(Path(args.fit))
    spec = LawSpec(**summary["spec"])
    chance = summary["chance"] if args.chance is None else args.chance
    ess = summary["diagnostics"]["ess_min"]
    answers = []
    for loss in args.loss:
        accuracy = predicted_accuracy(draws, np.float64(loss), np.float64(0.0), np.float64(chance), spec)
        answers.append({"loss": loss, "p_emerged": probability_emerged(draws["E0"], loss, ess=ess), "fewshot_accuracy": summarise(accuracy), "chance": chance})
    if args.json:
        print(to_json_text(answers, indent=2))
        return 0
    print(f"few-shot emergence loss: {summary['fewshot_emergence_loss']['median']:.4f} nats (90% {summary['fewshot_emergence_loss']['q05']:.4f}-{summary['fewshot_emergence_loss']['q95']:.4f})")
    print(f"{'loss':>8}  {'P(emerged)':>10}  {'90% MC interval':>16}  {'few-shot accuracy (median [5%, 95%])':>38}")
    for a in answers:
        p, acc = a["p_emerged"], a["fewshot_accuracy"]
        print(f"{a['loss']:12.4f}  {p['probability']:10.3f}  {p['low']:7.3f}-{p['high']:<8.3f}  {acc['median']:10.3f} [{acc['q05']:.3f}, {acc['q95']:.3f}]")
    return 0
