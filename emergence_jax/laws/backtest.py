"""Backtest, the paper's validation protocol (Snell et al. 2024, §6).

Order checkpoints by pretraining loss (or FLOPs), hold out the strongest, fit the emergence law on
the rest (the held-out checkpoints' rows are all excluded), and compare the predicted few-shot
emergence loss with the observed one, the few-shot elbow fitted to every checkpoint's few-shot
rows, and with the model-free truth (`laws.truth`: the two checkpoints that bracket the first
one clearly above chance). Success is an error of at most 0.1 nats. Ablations refit without the smallest or largest
data amount, and with one subset (seed) per amount.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from emergence_jax.errors import UserError
from emergence_jax.laws.fit import LOSS_UNITS, SamplerSettings, fit_emergence_law, make_spec
from emergence_jax.laws.functions import PERFORMANCE_FORMS
from emergence_jax.laws.mle import fit_mle, parameter_count
from emergence_jax.laws.sweep import Sweep
from emergence_jax.laws.threshold import fewshot_emergence_point
from emergence_jax.laws.truth import model_free_truth

SUCCESS_NATS = 0.1


@dataclasses.dataclass(frozen=True)
class BacktestSettings:
    """holdout: how many of the strongest checkpoints to hold out. order_by: ``loss`` or ``flops``.
    method: ``nuts`` (posterior, with an interval) or ``mle`` (point estimate only, fast)."""

    holdout: int = 2
    order_by: str = "loss"
    method: str = "nuts"
    form: str = "auto"
    law: str = "log_power"
    D0: float | None = None
    likelihood: str = "beta_binomial"
    ablations: bool = True
    loss_unit: str = "nats"


def choose_form_by_aic(sweep: Sweep, spec_for, *, seed: int = 0) -> tuple[str, float]:
    """(form, E0) of the maximum-likelihood fit with the lowest AIC among all forms."""
    best = None
    for form in PERFORMANCE_FORMS:
        spec = spec_for(form)
        mle = fit_mle(sweep, spec, seed=seed)
        aic = 2 * parameter_count(spec, sweep.finetuned) - 2 * mle.log_likelihood
        if best is None or aic < best[0]:
            best = (aic, form, mle.params["E0"])
    return best[1], float(best[2])


def _checkpoint_order(sweep: Sweep, order_by: str) -> list[str]:
    """Checkpoint ids from weakest to strongest."""
    models = np.unique(sweep.models)
    if order_by == "flops":
        key = {m: np.nanmax(sweep.flops[sweep.models == m]) for m in models}
        if any(np.isnan(v) for v in key.values()):
            raise UserError("--order-by flops needs a 'flops' value on every row; add the column or order by loss")
        return sorted(models, key=lambda m: key[m])
    key = {m: float(np.min(sweep.loss[sweep.models == m])) for m in models}
    return sorted(models, key=lambda m: -key[m])


def flops_ahead(sweep: Sweep, fit_models: list[str], true_loss: float) -> float | None:
    """How far past the strongest fitted checkpoint, in training FLOPs, the truth lies: the FLOPs at
    which the family reaches `true_loss` (log-linear interpolation of loss against log FLOPs over
    all checkpoints) divided by the largest FLOPs among the fitted checkpoints. None without FLOPs."""
    models = np.unique(sweep.models)
    flops = np.array([np.nanmax(sweep.flops[sweep.models == m]) for m in models])
    loss = np.array([np.min(sweep.loss[sweep.models == m]) for m in models])
    usable = np.isfinite(flops) & (flops > 0)
    fit_flops = [f for m, f in zip(models, flops) if m in set(fit_models) and np.isfinite(f)]
    if usable.sum() < 2 or not fit_flops:
        return None
    order = np.argsort(-loss[usable])
    at_truth = np.exp(np.interp(-true_loss, -loss[usable][order], np.log(flops[usable][order])))
    return float(at_truth / max(fit_flops))


def _predict(sweep: Sweep, settings: BacktestSettings, sampler: SamplerSettings) -> dict:
    if settings.method == "mle":
        spec_for = lambda form: make_spec(sweep, form=form, law=settings.law, D0=settings.D0, likelihood=settings.likelihood)
        if settings.form == "auto":
            form, E0 = choose_form_by_aic(sweep, spec_for, seed=sampler.seed)
        else:
            form, E0 = settings.form, fit_mle(sweep, spec_for(settings.form), seed=sampler.seed).params["E0"]
        return {"form": form, "mle": E0, "median": E0, "q05": None, "q95": None}
    fit = fit_emergence_law(sweep, form=settings.form, law=settings.law, D0=settings.D0, likelihood=settings.likelihood, sampler=sampler, loss_unit=settings.loss_unit, checks=False)
    summary = fit.summary()
    E0 = summary["fewshot_emergence_loss"]
    if E0["status"] == "beyond_data":  # nothing emerged in the fitted rows: no located prediction
        return {"form": summary["form"], "status": "beyond_data", "upper_bound": E0["upper_bound"], "median": None, "q05": None, "q95": None, "mle": None, "diagnostics": summary["diagnostics"]}
    return {"form": summary["form"], "form_weights": summary["form_weights"], **{k: v for k, v in E0.items() if k != "by_form"}, "diagnostics": summary["diagnostics"]}


def _score(prediction: dict, truth: float, model_free: dict | None = None, unit_in_nats: float = 1.0) -> dict:
    """Error in nats (losses in the input unit times `unit_in_nats`); success is ≤ 0.1 nats. With
    the model-free truth bracket, also whether the prediction falls inside it."""
    point = prediction["median"]
    if point is None:
        return {**prediction, "error_nats": None, "success": False, "within_interval": None, "within_model_free_bracket": None}
    error = abs(point - truth) * unit_in_nats
    within = None if prediction["q05"] is None else bool(prediction["q05"] <= truth <= prediction["q95"])
    bracket = None
    if model_free is not None and model_free["status"] == "located":
        bracket = bool(model_free["low"] <= point <= model_free["high"])
    return {**prediction, "error_nats": float(error), "success": bool(error <= SUCCESS_NATS), "within_interval": within, "within_model_free_bracket": bracket}


def run_backtest(sweep: Sweep, settings: BacktestSettings = BacktestSettings(), sampler: SamplerSettings = SamplerSettings()) -> dict:
    """Run the protocol; returns a JSON-able dict with the main result and the ablations."""
    order = _checkpoint_order(sweep, settings.order_by)
    if settings.holdout < 1 or settings.holdout >= len(order) - 2:
        raise UserError(f"--holdout must be between 1 and {len(order) - 3} for {len(order)} checkpoints, got {settings.holdout}")
    held_out = order[-settings.holdout :]
    fit_models = order[: -settings.holdout]
    fit_rows = sweep.subset(np.isin(sweep.models, fit_models))
    if not fit_rows.finetuned:
        raise UserError("no finetuned rows (train_examples > 0) among the checkpoints left for fitting; the backtest needs a finetuning sweep")

    truth_spec = lambda form: make_spec(sweep.fewshot(), form=form, law=settings.law, D0=settings.D0, likelihood=settings.likelihood)
    truth_form, _ = choose_form_by_aic(sweep.fewshot(), truth_spec, seed=sampler.seed)
    truth = fewshot_emergence_point(sweep, truth_spec(truth_form), seed=sampler.seed)
    model_free = model_free_truth(sweep)
    unit = LOSS_UNITS[settings.loss_unit]

    result = {
        "loss_unit": settings.loss_unit,
        "true_fewshot_emergence_loss": truth,
        "truth_form": truth_form,
        "model_free_truth": model_free,
        "held_out": held_out,
        "fit_checkpoints": fit_models,
        "order_by": settings.order_by,
        "flops_ahead": flops_ahead(sweep, fit_models, truth),
        "success_threshold_nats": SUCCESS_NATS,
        "main": _score(_predict(fit_rows, settings, sampler), truth, model_free, unit),
        "ablations": {},
    }
    if settings.ablations:
        amounts = np.unique(fit_rows.train_examples[fit_rows.train_examples > 0])
        variants = {}
        if amounts.size >= 3:
            variants["drop_smallest_D"] = fit_rows.train_examples != amounts[0]
            variants["drop_largest_D"] = fit_rows.train_examples != amounts[-1]
        seeds = _seeds_of(fit_rows)
        if seeds is not None and np.unique(seeds[fit_rows.train_examples > 0]).size > 1:
            first = np.min(seeds[fit_rows.train_examples > 0])
            variants["one_subset_per_D"] = (fit_rows.train_examples == 0) | (seeds == first)
        for name, mask in variants.items():
            result["ablations"][name] = _score(_predict(fit_rows.subset(mask), settings, sampler), truth, model_free, unit)
    return result


def _seeds_of(sweep: Sweep) -> np.ndarray | None:
    return None if np.all(np.isnan(sweep.seeds)) else sweep.seeds
