"""From the demo's results rows to its findings: which checkpoints are pre-emergence, the law fitted
to those only, the held-out truth, and how far finetuning moved the elbow for each D."""

from __future__ import annotations

import dataclasses

import numpy as np

from emergence_jax.laws.backtest import SUCCESS_NATS, flops_ahead
from emergence_jax.laws.fit import EmergenceFit, SamplerSettings, fit_emergence_law, make_spec
from emergence_jax.laws.functions import emergence_loss
from emergence_jax.laws.mle import fit_mle
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


def _as_fewshot(sweep: Sweep) -> Sweep:
    return dataclasses.replace(sweep, train_examples=np.zeros_like(sweep.train_examples))


def elbow_per_amount(sweep: Sweep, spec_shots: float) -> dict[int, float]:
    """Maximum-likelihood ReLU elbow (nats/token) fitted separately to the rows of each D, D = 0
    included: the measured shift of emergence with finetuning data, free of the law's shape."""
    elbows = {}
    for D in np.unique(sweep.train_examples):
        rows = _as_fewshot(sweep.subset(sweep.train_examples == D))
        if np.unique(rows.loss).size < 3:
            continue
        spec = make_spec(rows, form="relu", D0=spec_shots)
        elbows[int(D)] = float(fit_mle(rows, spec).params["E0"])
    return elbows


def analyse(sweep: Sweep, fit_models: list[str], sampler: SamplerSettings, *, form: str = "relu") -> tuple[dict, EmergenceFit]:
    """Fit the law to `fit_models`' rows only, and compare its few-shot prediction with the truth
    (the few-shot elbow fitted to every checkpoint, the held-out stronger ones included)."""
    fit_rows = sweep.subset(np.isin(sweep.models, fit_models))
    fit = fit_emergence_law(fit_rows, form=form, sampler=sampler)
    summary = fit.summary()
    predicted = summary["fewshot_emergence_loss"]
    fewshot = sweep.fewshot()
    truth = fewshot_emergence_point(sweep, make_spec(fewshot, form=form))
    error = abs(predicted["median"] - truth)
    shots = float(np.unique(sweep.shots)[0])
    amounts = np.unique(fit_rows.train_examples[fit_rows.train_examples > 0])
    draws = fit.posterior.draws()
    law_elbows = {
        int(D): summarise(emergence_loss(np.float64(D), draws["E0"], draws["shift"], draws["alpha"], fit.spec))
        for D in amounts
    }
    measured = elbow_per_amount(sweep, shots)
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
        "measured_elbow_per_D": {str(D): v for D, v in measured.items()},
        "measured_shift_per_D_nats": {str(D): v - measured[0] for D, v in measured.items() if D > 0 and 0 in measured},
        "fit_checkpoint_loss_spacing_nats": spacing,
    }
    return result, fit
