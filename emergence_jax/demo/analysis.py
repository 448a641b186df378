"""From the demo's results rows to its findings: which checkpoints are pre-emergence, the law fitted
to those only, the held-out truth, and where emergence starts for each D."""

from __future__ import annotations

import numpy as np

from emergence_jax.laws.backtest import SUCCESS_NATS, flops_ahead
from emergence_jax.laws.fit import EmergenceFit, SamplerSettings, fit_emergence_law, make_spec
from emergence_jax.laws.functions import emergence_loss
from emergence_jax.laws.posterior import summarise
from emergence_jax.laws.sweep import Sweep
from emergence_jax.laws.threshold import fewshot_emergence_point

# A checkpoint is "at chance" when its few-shot accuracy is less than this many binomial standard
# errors above chance (one-sided, ≈ 0.13% false-alarm rate per checkpoint, so a ladder of tens of checkpoints rarely
# mistakes noise for emergence).
AT_CHANCE_Z = 3.0


def chance_z(accuracy: float, chance: float, n_eval: int) -> float:
    """How many binomial standard errors `accuracy` lies above `chance`."""
    return (accuracy - chance) / np.sqrt(chance * (1 - chance) / n_eval)


def pre_emergence_models(fewshot_rows: list[dict]) -> list[str]:
    """Checkpoints whose few-shot accuracy is within binomial noise of chance and that are weaker
    than every checkpoint above chance (so a late dip back to chance does not count)."""
    above = [r["pretrain_loss"] for r in fewshot_rows if chance_z(r["accuracy"], r["chance"], r["n_eval"]) >= AT_CHANCE_Z]
    first_emerged = max(above) if above else -np.inf
    return [
        r["model"]
        for r in sorted(fewshot_rows, key=lambda r: -r["pretrain_loss"])
        if chance_z(r["accuracy"], r["chance"], r["n_eval"]) < AT_CHANCE_Z and r["pretrain_loss"] > first_emerged
    ]


def onset_per_amount(sweep: Sweep) -> dict[int, float]:
    """For each D (0 = few-shot): the highest pretraining loss (nats/token) at which accuracy, pooled
    over subsets, is at least AT_CHANCE_Z binomial standard errors above chance. A model-free
    reading of where emergence starts; it can only take the values of checkpoints that were run."""
    onsets = {}
    for D in np.unique(sweep.train_examples):
        rows = sweep.subset(sweep.train_examples == D)
        above = []
        for loss in np.unique(rows.loss):
            at = rows.loss == loss
            n = float(rows.n_eval[at].sum())
            accuracy = float((rows.accuracy[at] * rows.n_eval[at]).sum() / n)
            if chance_z(accuracy, float(rows.chance[at][0]), n) >= AT_CHANCE_Z:
                above.append(float(loss))
        if above:
            onsets[int(D)] = max(above)
    return onsets


def analyse(sweep: Sweep, fit_models: list[str], sampler: SamplerSettings, *, form: str, likelihood: str) -> tuple[dict, EmergenceFit]:
    """Fit the law to `fit_models`' rows only (``form="auto"``: the form PSIS-LOO prefers), and
    compare its few-shot prediction with the truth: E0 of the same form and likelihood fitted to
    the few-shot rows of every checkpoint, the held-out stronger ones included."""
    fit_rows = sweep.subset(np.isin(sweep.models, fit_models))
    fit = fit_emergence_law(fit_rows, form=form, likelihood=likelihood, sampler=sampler)
    summary = fit.summary()
    predicted = summary["fewshot_emergence_loss"]
    fewshot = sweep.fewshot()
    truth = fewshot_emergence_point(sweep, make_spec(fewshot, form=fit.spec.form, likelihood=likelihood))
    error = abs(predicted["median"] - truth)
    amounts = np.unique(fit_rows.train_examples[fit_rows.train_examples > 0])
    draws = fit.posterior.draws()
    law_elbows = {
        int(D): summarise(emergence_loss(np.float64(D), draws["E0"], draws["shift"], draws["alpha"], fit.spec))
        for D in amounts
    }
    onsets = onset_per_amount(sweep)
    losses = np.unique(sweep.loss[np.isin(sweep.models, fit_models)])
    spacing = float(np.median(np.diff(np.sort(losses)))) if losses.size > 1 else float("nan")
    result = {
        "predicted_fewshot_emergence_loss": {k: float(predicted[k]) for k in ("median", "q05", "q95", "mle")},
        "true_fewshot_emergence_loss": truth,
        "error_nats": float(error),
        "success": bool(error <= SUCCESS_NATS),
        "success_threshold_nats": SUCCESS_NATS,
        "within_interval": bool(predicted["q05"] <= truth <= predicted["q95"]),
        "flops_ahead": flops_ahead(sweep, list(fit_models), truth),
        "fit_checkpoints": list(fit_models),
        "held_out_checkpoints": sorted(str(m) for m in set(sweep.models) - set(fit_models)),
        "law": {k: summary[k] for k in ("form", "law", "D0", "D_ref", "params", "diagnostics", "mle_log_likelihood")} | {"coefficients_mle": summary.get("law_coefficients_mle")},
        "fitted_elbow_per_D": {str(D): v for D, v in law_elbows.items()},
        "form_comparison": {name: {"elpd_loo": score["elpd_loo"], "elpd_diff": score["elpd_diff"], "chosen": score["chosen"]} for name, score in fit.comparison.items()},
        "onset_loss_per_D": {str(D): v for D, v in onsets.items()},
        "onset_shift_per_D_nats": {str(D): v - onsets[0] for D, v in onsets.items() if D > 0 and 0 in onsets},
        "fit_checkpoint_loss_spacing_nats": spacing,
    }
    return result, fit
