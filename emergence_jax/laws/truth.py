"""The model-free few-shot emergence point: what the data say without any law.

Rule (exact). Take the few-shot rows (``train_examples == 0``) and pool them per checkpoint (the
``model`` column): accuracy = Σ correct / Σ n_eval, chance = n_eval-weighted mean chance, loss = the
checkpoint's mean pretraining loss. A checkpoint is *above chance* when both

- its z-score z = (accuracy − chance) / SE, SE = sqrt(chance·(1 − chance) / Σ n_eval) (the binomial
  standard error under "guessing"), is ≥ ``sigmas`` (default 3), and
- its excess accuracy − chance is ≥ ``min_excess`` (default 0.05·(1 − chance), e.g. 0.0375 for
  4-way multiple choice). Real benchmarks sit a little off chance without any skill (answer-letter
  bias: Pythia ≤ 410M reach 0.263 on 5-shot MMLU with 14,042 questions, 3.6 binomial SEs above 0.25;
  Gadre et al.'s 7B reach 0.273 0-shot), so significance alone would call these emerged.

Checkpoints are visited from the weakest (highest loss) to the strongest. The first one above
chance, F, and the checkpoint visited just before it, P (the next higher loss), bracket the
emergence loss: ``low = loss(F)``, ``high = loss(P)`` (loss units of the input). Status:

- ``located``: F exists and is not the weakest checkpoint; E0 ∈ [low, high].
- ``before_data``: the weakest checkpoint is already above chance; E0 ≥ low, ``high`` is None.
- ``beyond_data``: no checkpoint is above chance; emergence needs a loss below ``upper_bound`` =
  the strongest checkpoint's loss.

The bracket is of *detectable* emergence. For a gradual (ReLU-like) rise, accuracy first clears the
rule somewhat after the law's elbow E0, so this truth lies at or below E0 by up to one ramp's
detection lag; for a sharp jump the two agree within a checkpoint gap. Backtests report it beside
the model-based truth (the elbow fitted to all few-shot rows).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from emergence_jax.errors import UserError
from emergence_jax.laws.sweep import Sweep, sweep_from_records

DEFAULT_SIGMAS = 3.0
DEFAULT_MIN_EXCESS_FRACTION = 0.05


def checkpoint_table(sweep: Sweep, *, train_examples: float = 0.0) -> dict[str, np.ndarray]:
    """Rows with ``train_examples == D`` pooled per checkpoint, sorted weakest (highest loss) first:
    model, loss, accuracy, chance, n_eval (summed), z (binomial SEs above chance), excess."""
    rows = sweep.subset(sweep.train_examples == train_examples)
    models = np.unique(rows.models)
    table = {"model": [], "loss": [], "accuracy": [], "chance": [], "n_eval": []}
    for model in models:
        mask = rows.models == model
        n = float(rows.n_eval[mask].sum())
        table["model"].append(model)
        table["loss"].append(float(rows.loss[mask].mean()))
        table["accuracy"].append(float(rows.correct[mask].sum() / n))
        table["chance"].append(float(np.sum(rows.chance[mask] * rows.n_eval[mask]) / n))
        table["n_eval"].append(n)
    table = {key: np.asarray(value) for key, value in table.items()}
    order = np.argsort(-table["loss"], kind="stable")
    table = {key: value[order] for key, value in table.items()}
    se = np.sqrt(np.clip(table["chance"] * (1 - table["chance"]), 1e-12, None) / np.maximum(table["n_eval"], 1.0))
    table["excess"] = table["accuracy"] - table["chance"]
    table["z"] = table["excess"] / se
    return table


def above_chance(table: dict[str, np.ndarray], *, sigmas: float = DEFAULT_SIGMAS, min_excess: float | None = None) -> np.ndarray:
    """Boolean per checkpoint of `checkpoint_table`: z ≥ sigmas and excess ≥ min_excess
    (default 0.05·(1 − chance), accuracy units)."""
    threshold = DEFAULT_MIN_EXCESS_FRACTION * (1 - table["chance"]) if min_excess is None else min_excess
    return (table["z"] >= sigmas) & (table["excess"] >= threshold)


def familywise_sigmas(sigmas: float, tests: int) -> float:
    """The z threshold that keeps the chance of any false alarm among `tests` independent
    checkpoints at the one-test rate of `sigmas` (Bonferroni): Φ⁻¹(1 − Φ(−sigmas)/tests)."""
    return float(stats.norm.isf(stats.norm.sf(sigmas) / max(tests, 1)))


def model_free_truth(sweep_or_rows, *, sigmas: float = DEFAULT_SIGMAS, min_excess: float | None = None) -> dict:
    """The loss interval that brackets the first checkpoint (weakest first) whose pooled few-shot
    accuracy is ≥ `sigmas` binomial SEs and ≥ `min_excess` above chance (rule in the module
    docstring). `sweep_or_rows` is a `Sweep` or validated results rows of one task and metric.

    Returns a JSON-able dict: ``status`` (``located`` / ``before_data`` / ``beyond_data``), ``low``
    and ``high`` (the bracket, input loss units; None where open), ``midpoint``, ``upper_bound``
    (beyond_data only), ``first_emerged`` and ``previous`` (checkpoint records), the thresholds used
    and the number of checkpoints.
    """
    sweep = sweep_or_rows if isinstance(sweep_or_rows, Sweep) else sweep_from_records(list(sweep_or_rows))
    if not np.any(sweep.train_examples == 0):
        raise UserError("model-free truth: no few-shot rows (train_examples = 0); it needs every checkpoint's few-shot accuracy")
    table = checkpoint_table(sweep)
    emerged = above_chance(table, sigmas=sigmas, min_excess=min_excess)

    def record(index):
        return {key: (str(table[key][index]) if key == "model" else float(table[key][index])) for key in ("model", "loss", "accuracy", "chance", "n_eval", "z", "excess")}

    result = {
        "sigmas": float(sigmas),
        "min_excess": None if min_excess is None else float(min_excess),
        "min_excess_rule": f"{DEFAULT_MIN_EXCESS_FRACTION:g}*(1-chance)" if min_excess is None else "given",
        "n_checkpoints": int(table["model"].size),
        "low": None,
        "high": None,
        "midpoint": None,
        "upper_bound": None,
        "first_emerged": None,
        "previous": None,
    }
    if not emerged.any():
        return {**result, "status": "beyond_data", "upper_bound": float(table["loss"].min())}
    first = int(np.argmax(emerged))
    result.update(low=float(table["loss"][first]), first_emerged=record(first))
    if first == 0:
        return {**result, "status": "before_data"}
    high = float(table["loss"][first - 1])
    return {**result, "status": "located", "high": high, "midpoint": 0.5 * (result["low"] + high), "previous": record(first - 1)}


def emergence_status(sweep: Sweep, *, sigmas: float = DEFAULT_SIGMAS, min_excess: float | None = None) -> dict:
    """Has anything in the data emerged? Every (checkpoint, D) group of rows — few-shot and
    finetuned — is tested as in `model_free_truth`, with the z threshold raised for the number of
    groups (`familywise_sigmas`, so chance-level data trip it with probability ≈ Φ(−sigmas) in all).

    Returns ``status`` ``located`` (some group is above chance, so the law has something to locate
    E0 from) or ``beyond_data`` with ``upper_bound``, the strongest checkpoint's loss: nothing has
    emerged there, so few-shot emergence needs a lower loss.
    """
    tables = [checkpoint_table(sweep, train_examples=D) for D in np.unique(sweep.train_examples)]
    groups = sum(table["model"].size for table in tables)
    threshold = familywise_sigmas(sigmas, groups)
    emerged = [(D, table["model"][flags]) for D, table in zip(np.unique(sweep.train_examples), tables) for flags in [above_chance(table, sigmas=threshold, min_excess=min_excess)] if flags.any()]
    rule = f"a (checkpoint, D) group is above chance when its pooled accuracy is >= {threshold:.2f} binomial SEs ({sigmas:g} SEs, Bonferroni over {groups} groups) and >= " + (f"{DEFAULT_MIN_EXCESS_FRACTION:g}*(1-chance)" if min_excess is None else f"{min_excess:g}") + " above chance"
    result = {"rule": rule, "groups": int(groups), "z_threshold": threshold}
    if not emerged:
        return {**result, "status": "beyond_data", "upper_bound": float(sweep.loss.min())}
    return {**result, "status": "located", "emerged_groups": {f"D={int(D)}": int(models.size) for D, models in emerged}}
