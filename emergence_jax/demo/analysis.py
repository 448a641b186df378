"""From the demo's results rows to its findings: which checkpoints are pre-emergence, which to
finetune, the law fitted to early checkpoints only, the model-free truth, and where emergence
starts for each D.

One rule decides "above chance" everywhere here: `laws.truth.above_chance` (pooled accuracy ≥ 3
binomial SEs and ≥ 5% of (1 − chance) above chance), the rule of the model-free truth.
"""

from __future__ import annotations

import numpy as np

from emergence_jax.laws.backtest import SUCCESS_NATS, flops_ahead
from emergence_jax.laws.fit import EmergenceFit, SamplerSettings, fit_emergence_law, make_spec
from emergence_jax.laws.functions import emergence_loss
from emergence_jax.laws.posterior import summarise
from emergence_jax.laws.sweep import Sweep, sweep_from_records
from emergence_jax.laws.threshold import fewshot_emergence_point
from emergence_jax.laws.truth import DEFAULT_SIGMAS, above_chance, checkpoint_table, model_free_truth

AT_CHANCE_Z = DEFAULT_SIGMAS


def chance_z(accuracy: float, chance: float, n_eval: int) -> float:
    """How many binomial standard errors `accuracy` lies above `chance`."""
    return (accuracy - chance) / np.sqrt(chance * (1 - chance) / n_eval)


def pre_emergence_models(fewshot_rows: list[dict]) -> list[str]:
    """Checkpoints (of one rung) that are not above chance few-shot and weaker than every checkpoint
    that is (so a late dip back to chance does not count), strongest first."""
    table = checkpoint_table(sweep_from_records(fewshot_rows))
    emerged = above_chance(table)
    first = int(np.argmax(emerged)) if emerged.any() else table["model"].size
    return [str(m) for m in table["model"][:first][::-1]]


def largest_amount_helps(rows: list[dict]) -> bool:
    """Whether the largest D among finetuned `rows` (one checkpoint, every subset pooled) is above chance."""
    largest = max(r["train_examples"] for r in rows)
    table = checkpoint_table(sweep_from_records(rows), train_examples=largest)
    return bool(above_chance(table).any())


def onset_per_amount(sweep: Sweep) -> dict[int, dict]:
    """For each D (0 = few-shot): the weakest checkpoint whose subset-pooled accuracy is above chance
    (model, loss in nats/token, FLOPs). A model-free reading of where emergence starts; it can only
    take the values of checkpoints that were run (for D > 0: the finetuned ones)."""
    flops = {m: float(np.nanmax(sweep.flops[sweep.models == m])) for m in np.unique(sweep.models)}
    onsets = {}
    for D in np.unique(sweep.train_examples):
        table = checkpoint_table(sweep, train_examples=D)
        emerged = above_chance(table)
        if emerged.any():
            i = int(np.argmax(emerged))
            onsets[int(D)] = {"model": str(table["model"][i]), "loss": float(table["loss"][i]), "flops": flops[str(table["model"][i])]}
    return onsets


def onset_shifts(onsets: dict[int, dict], spacing: float) -> dict:
    """Each D's onset against few-shot: shift in nats, in finetuned-checkpoint spacings, and as the
    ratio few-shot onset FLOPs / D's onset FLOPs; whether the onset is monotonic (non-decreasing
    loss) in D, and the shift between the smallest and largest D that emerged."""
    amounts = sorted(D for D in onsets if D > 0)
    per_D = {}
    for D in amounts:
        entry = {"nats": None, "spacings": None, "flops_ratio": None}
        if 0 in onsets:
            nats = onsets[D]["loss"] - onsets[0]["loss"]
            entry = {"nats": nats, "spacings": nats / spacing if spacing > 0 else None, "flops_ratio": onsets[0]["flops"] / onsets[D]["flops"]}
        per_D[str(D)] = entry
    losses = [onsets[D]["loss"] for D in amounts]
    span = (losses[-1] - losses[0]) if len(losses) > 1 else None
    return {
        "per_D": per_D,
        "monotonic_in_D": bool(all(b >= a for a, b in zip(losses, losses[1:]))),
        "smallest_to_largest_D_nats": span,
        "smallest_to_largest_D_spacings": (span / spacing) if span is not None and spacing > 0 else None,
    }


def analyse(sweep: Sweep, fit_models: list[str], finetuned_models: list[str], sampler: SamplerSettings, *, form: str, likelihood: str) -> tuple[dict, EmergenceFit]:
    """Fit the law to `fit_models`' rows only and compare its few-shot prediction with the
    model-free truth (`laws.truth.model_free_truth`: the bracket of the first few-shot checkpoint
    above chance; its midpoint is the truth point). The model-based truth (E0 of the chosen form
    fitted to the few-shot rows of every checkpoint) is reported beside it."""
    fit_rows = sweep.subset(np.isin(sweep.models, fit_models))
    fit = fit_emergence_law(fit_rows, form=form, likelihood=likelihood, sampler=sampler, checks=False)
    summary = fit.summary()
    predicted = summary["fewshot_emergence_loss"]
    truth = model_free_truth(sweep)
    truth_point = truth["midpoint"] if truth["status"] == "located" else None
    model_based = fewshot_emergence_point(sweep, make_spec(sweep.fewshot(), form=fit.spec.form, likelihood=likelihood))
    located = "median" in predicted and truth_point is not None
    error = abs(predicted["median"] - truth_point) if located else None
    draws = fit.posterior.draws()
    amounts = np.unique(fit_rows.train_examples[fit_rows.train_examples > 0])
    law_elbows = {int(D): summarise(emergence_loss(np.float64(D), draws["E0"], draws["shift"], draws["alpha"], fit.spec)) for D in amounts} if "shift" in draws else {}
    onsets = onset_per_amount(sweep)
    finetuned_losses = np.unique(sweep.loss[np.isin(sweep.models, finetuned_models)])
    spacing = float(np.median(np.diff(np.sort(finetuned_losses)))) if finetuned_losses.size > 1 else float("nan")
    fit_flops = max(float(np.nanmax(sweep.flops[sweep.models == m])) for m in fit_models)
    result = {
        "predicted_fewshot_emergence_loss": {k: (float(predicted[k]) if k in predicted else None) for k in ("median", "q05", "q95", "mle")},
        "prediction_status": predicted.get("status", "located"),
        "model_free_truth": truth,
        "true_fewshot_emergence_loss": truth_point,
        "model_based_truth": {"loss": model_based, "form": fit.spec.form, "error_nats": abs(predicted["median"] - model_based) if "median" in predicted else None},
        "error_nats": error,
        "success": bool(error is not None and error <= SUCCESS_NATS),
        "success_threshold_nats": SUCCESS_NATS,
        "within_interval": bool(located and predicted["q05"] <= truth_point <= predicted["q95"]),
        "flops_ahead": flops_ahead(sweep, list(fit_models), truth_point) if truth_point is not None else None,
        "flops_ahead_first_emerged": (float(np.nanmax(sweep.flops[sweep.models == truth["first_emerged"]["model"]])) / fit_flops) if truth_point is not None else None,
        "fit_checkpoints": list(fit_models),
        "finetuned_checkpoints": list(finetuned_models),
        "held_out_checkpoints": sorted(str(m) for m in set(sweep.models) - set(fit_models)),
        "law": {k: summary.get(k) for k in ("form", "law", "D0", "D_ref", "params", "diagnostics", "mle_log_likelihood")} | {"coefficients_mle": summary.get("law_coefficients_mle")},
        "fitted_elbow_per_D": {str(D): v for D, v in law_elbows.items()},
        "form_comparison": {name: {k: score.get(k) for k in ("elpd_loo", "elpd_diff", "chosen", "weight")} for name, score in fit.comparison.items()},
        "onset_per_D": {str(D): v for D, v in onsets.items()},
        "onset_loss_per_D": {str(D): v["loss"] for D, v in onsets.items()},
        "onset_shift": onset_shifts(onsets, spacing),
        "finetuned_checkpoint_loss_spacing_nats": spacing,
    }
    return result, fit
