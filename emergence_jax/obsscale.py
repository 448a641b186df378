"""Observational scaling baseline (in the spirit of Ruan, Maddison & Hashimoto 2024, "Observational
Scaling Laws", arXiv 2405.10938): predict a task's accuracy across model families from a
low-dimensional capability measure, with no finetuning.

Measures (x, per model):

- ``pca``: the first k principal components of standardised benchmark scores (MMLU, ARC-C,
  HellaSwag, Winogrande, TruthfulQA, GSM8K by default; the target is never among them). Mean, scale
  and components are estimated on the fitted models only, then applied to the held-out ones.
- ``flops``: log10 training FLOPs, with one slope shared by all families and an offset per family
  (a family with no fitted model gets the mean offset): a compute scaling law within families.

Link: accuracy = chance + (1 − chance)·σ(w·x + b) (w a k-vector for ``pca``), fitted by least
squares on accuracy (`scipy.optimize.least_squares`). Backtest: models with training FLOPs at or
below the cutoff (default 8.4e22, the paper's cutoff for emergent tasks) are fitted and the others
predicted; the error is the mean absolute (and root-mean-square) accuracy error on the held-out
models. With pretraining losses and a family of checkpoints, the predicted emergence point (the
FLOPs where the predicted accuracy reaches chance + 5% of (1 − chance), the `laws.truth` rule's
excess) is mapped to a loss along the family and scored against the model-free truth in nats, the
unit of the emergence law's backtest error.

Inputs: a wide table (one row per model: ``model``, ``model_family``, ``train_flops_1e21`` or
``flops``, one column per benchmark; e.g. the bundled ObsScaling table), or results records
(DESIGN.md §4; few-shot rows pivoted to one column per task, family = the model id before '@').
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np

from emergence_jax.errors import UserError

DEFAULT_BENCHMARKS = ("mmlu_5shot", "arc_challenge_25shot", "hellaswag_10shot", "winogrande_5shot", "truthfulqa_mc2_0shot", "gsm8k_5shot")
DEFAULT_CUTOFF_FLOPS = 8.4e22
EMERGENCE_EXCESS = 0.05  # of (1 - chance): laws.truth's DEFAULT_MIN_EXCESS_FRACTION
MEASURES = ("pca", "flops")


@dataclasses.dataclass
class ModelTable:
    """One row per model. scores[column] are accuracies in [0, 1] (NaN where missing); flops in
    FLOPs (NaN where unknown); loss in nats/token (NaN where unknown)."""

    models: np.ndarray
    families: np.ndarray
    flops: np.ndarray
    scores: dict[str, np.ndarray]
    loss: np.ndarray

    def subset(self, mask: np.ndarray) -> ModelTable:
        return ModelTable(self.models[mask], self.families[mask], self.flops[mask], {k: v[mask] for k, v in self.scores.items()}, self.loss[mask])


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_wide_table(path: Path) -> ModelTable:
    """A per-model CSV (ObsScaling's layout): model, model_family, train_flops_1e21 (or flops),
    benchmark columns; optional pretrain_loss."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        rows = list(reader)
    if "model" not in header:
        raise UserError(f"{path}: missing column 'model'; obsscale reads a per-model table or results records")
    if not rows:
        raise UserError(f"{path}: no rows")
    if "train_flops_1e21" in header:
        flops = np.array([_float(r["train_flops_1e21"]) * 1e21 for r in rows])
    elif "flops" in header:
        flops = np.array([_float(r["flops"]) for r in rows])
    else:
        raise UserError(f"{path}: missing column 'flops' (or 'train_flops_1e21'); the backtest splits models by training FLOPs")
    family_column = "model_family" if "model_family" in header else "family" if "family" in header else None
    families = np.array([r[family_column] if family_column else r["model"].split("@")[0] for r in rows])
    skip = {"model", "model_family", "family", "train_flops_1e21", "flops", "params_B", "train_tokens_T", "in_sub10b_subset", "pretrain_loss"}
    scores = {c: np.array([_float(r[c]) for r in rows]) for c in header if c not in skip}
    loss = np.array([_float(r.get("pretrain_loss")) for r in rows])
    return ModelTable(np.array([r["model"] for r in rows]), families, flops, scores, loss)


def table_from_records(rows: list[dict], *, source: str) -> ModelTable:
    """Few-shot results rows -> one row per model, one score column per task (with its metric
    when several metrics are present: 'task:metric'), family = model id before '@'."""
    rows = [r for r in rows if r["train_examples"] == 0]
    if not rows:
        raise UserError(f"{source}: no few-shot rows (train_examples = 0)")
    metrics = {r.get("metric") for r in rows}
    column = (lambda r: r.get("task", "task")) if len(metrics) == 1 else (lambda r: f"{r.get('task', 'task')}:{r.get('metric')}")
    models = sorted({r["model"] for r in rows})
    index = {m: i for i, m in enumerate(models)}
    scores: dict[str, np.ndarray] = {}
    flops, loss = np.full(len(models), np.nan), np.full(len(models), np.nan)
    for r in rows:
        i = index[r["model"]]
        scores.setdefault(column(r), np.full(len(models), np.nan))[i] = r["accuracy"]
        flops[i] = r.get("flops", flops[i])
        loss[i] = r["pretrain_loss"]
    return ModelTable(np.array(models), np.array([m.split("@")[0] for m in models]), flops, scores, loss)


def read_table(path: str) -> tuple[ModelTable, list[dict] | None]:
    """A wide per-model CSV, or results records (CSV/JSONL with the required columns); the records
    are returned too (None for a wide table)."""
    from emergence_jax.records import REQUIRED_COLUMNS, read_records

    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: not found")
    if p.suffix.lower() == ".csv":
        with p.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
        if not all(c in header for c in REQUIRED_COLUMNS):
            return read_wide_table(p), None
    rows = read_records(p)
    return table_from_records(rows, source=str(p)), rows


@dataclasses.dataclass
class SigmoidFit:
    """accuracy = chance + (1 − chance)·σ(x·w + b_family); `transform` maps a table to x."""

    measure: str
    w: np.ndarray
    offsets: dict[str, float]
    default_offset: float
    chance: float
    transform: object

    def logit(self, table: ModelTable) -> np.ndarray:
        x = self.transform(table)
        b = np.array([self.offsets.get(f, self.default_offset) for f in table.families])
        return x @ self.w + b

    def predict(self, table: ModelTable) -> np.ndarray:
        return self.chance + (1 - self.chance) / (1 + np.exp(-self.logit(table)))


def _pca_transform(train: ModelTable, benchmarks: list[str], components: int):
    X = np.column_stack([train.scores[c] for c in benchmarks])
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale[scale == 0] = 1.0
    _, singular, vt = np.linalg.svd((X - mean) / scale, full_matrices=False)
    basis = vt[:components].T
    explained = (singular**2 / np.sum(singular**2))[:components]

    def transform(table: ModelTable) -> np.ndarray:
        Z = (np.column_stack([table.scores[c] for c in benchmarks]) - mean) / scale
        return Z @ basis

    return transform, explained


def fit_sigmoid(train: ModelTable, target: str, *, measure: str, chance: float, benchmarks: list[str], components: int) -> tuple[SigmoidFit, dict]:
    """Least-squares fit of the sigmoid link on the training models."""
    from scipy.optimize import least_squares

    y = train.scores[target]
    info = {}
    if measure == "pca":
        transform, explained = _pca_transform(train, benchmarks, components)
        info["explained_variance"] = explained.tolist()
        families = []
    else:
        transform = lambda table: np.log10(table.flops)[:, None]
        families = sorted(set(train.families))
    k = transform(train).shape[1]
    fam_index = np.array([families.index(f) for f in train.families]) if families else None

    def unpack(theta):
        w = theta[:k]
        b = theta[k:][fam_index] if families else theta[k]
        return w, b

    def residuals(theta):
        w, b = unpack(theta)
        return chance + (1 - chance) / (1 + np.exp(-(transform(train) @ w + b))) - y

    x = transform(train)
    best = None
    rng = np.random.default_rng(0)
    for start in range(12):
        w0 = rng.normal(0, 1, k) if start else np.ones(k)
        center = -(x @ w0).mean()
        theta0 = np.concatenate([w0, np.full(len(families) or 1, center)])
        result = least_squares(residuals, theta0, method="lm" if len(y) > theta0.size else "trf", max_nfev=4000)
        if best is None or result.cost < best.cost:
            best = result
    w, _ = unpack(best.x)
    offsets = {f: float(best.x[k + i]) for i, f in enumerate(families)} if families else {}
    default = float(np.mean(list(offsets.values()))) if families else float(best.x[k])
    info["train_rmse"] = float(np.sqrt(2 * best.cost / len(y)))
    return SigmoidFit(measure, w, offsets, default, chance, transform), info


def emergence_flops(fit: SigmoidFit, table: ModelTable, family: str) -> float | None:
    """The FLOPs (flops measure only) at which the family's predicted accuracy reaches chance +
    EMERGENCE_EXCESS·(1 − chance); None if the fitted curve falls with compute."""
    if fit.measure != "flops" or fit.w[0] <= 0:
        return None
    b = fit.offsets.get(family, fit.default_offset)
    z = math.log(EMERGENCE_EXCESS / (1 - EMERGENCE_EXCESS))
    return float(10 ** ((z - b) / fit.w[0]))


def loss_at_flops(table: ModelTable, family: str, flops: float) -> float | None:
    """The family's pretraining loss at `flops`, interpolated linearly in log FLOPs between its
    checkpoints (extrapolated linearly from the last two beyond the strongest)."""
    mask = (table.families == family) & np.isfinite(table.loss) & np.isfinite(table.flops) & (table.flops > 0)
    if mask.sum() < 2:
        return None
    order = np.argsort(table.flops[mask])
    lf, loss = np.log10(table.flops[mask][order]), table.loss[mask][order]
    x = math.log10(flops)
    if x > lf[-1]:
        slope = (loss[-1] - loss[-2]) / (lf[-1] - lf[-2]) if lf[-1] > lf[-2] else 0.0
        return float(loss[-1] + slope * (x - lf[-1]))
    return float(np.interp(x, lf, loss))


def backtest(table: ModelTable, target: str, *, measure: str = "pca", cutoff: float = DEFAULT_CUTOFF_FLOPS, chance: float = 0.0, benchmarks: list[str] | None = None, components: int = 3, records: list[dict] | None = None) -> dict:
    """Fit on models with FLOPs ≤ `cutoff`, predict the rest; JSON-able result."""
    if measure not in MEASURES:
        raise UserError(f"--measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    if target not in table.scores:
        raise UserError(f"--target {target!r} is not a column of the table; columns: {', '.join(sorted(table.scores)[:20])}{' ...' if len(table.scores) > 20 else ''}")
    if measure == "pca":
        benchmarks = [b for b in (benchmarks or DEFAULT_BENCHMARKS) if b != target]
        missing = [b for b in benchmarks if b not in table.scores]
        if missing:
            raise UserError(f"--benchmarks: {missing[0]!r} is not a column of the table; choose columns present for every model")
        components = min(components, len(benchmarks))
        usable = np.all(np.column_stack([np.isfinite(table.scores[b]) for b in benchmarks]), axis=1)
    else:
        benchmarks = []
        usable = np.ones(table.models.size, bool)
    usable &= np.isfinite(table.scores[target]) & np.isfinite(table.flops) & (table.flops > 0)
    data = table.subset(usable)
    train_mask = data.flops <= cutoff
    if train_mask.sum() < (components + 2 if measure == "pca" else 3) or (~train_mask).sum() < 1:
        raise UserError(f"the FLOPs cutoff {cutoff:.3g} leaves {int(train_mask.sum())} models to fit and {int((~train_mask).sum())} to predict (of {data.models.size} with the target, FLOPs and benchmarks); move --flops-cutoff")
    train, test = data.subset(train_mask), data.subset(~train_mask)
    fit, info = fit_sigmoid(train, target, measure=measure, chance=chance, benchmarks=benchmarks, components=components)
    predicted = fit.predict(test)
    errors = predicted - test.scores[target]
    result = {
        "target": target,
        "measure": measure,
        "benchmarks": benchmarks,
        "components": components if measure == "pca" else None,
        "chance": chance,
        "flops_cutoff": cutoff,
        "n_fit": int(train.models.size),
        "n_heldout": int(test.models.size),
        "heldout_mae": float(np.mean(np.abs(errors))),
        "heldout_rmse": float(np.sqrt(np.mean(errors**2))),
        "fit": info,
        "predictions": [
            {"model": m, "family": f, "flops": float(fl), "actual": float(a), "predicted": float(p)}
            for m, f, fl, a, p in zip(test.models, test.families, test.flops, test.scores[target], predicted)
        ],
    }
    if records is not None and np.isfinite(data.loss).any():
        result["emergence_point"] = _emergence_point_errors(fit, data, target, records, cutoff)
    return result


def _emergence_point_errors(fit: SigmoidFit, data: ModelTable, target: str, records: list[dict], cutoff: float) -> dict:
    """Per family: the predicted emergence loss (flops measure) beside the model-free truth of the
    family's few-shot rows (`laws.truth`), error in nats."""
    from emergence_jax.laws.sweep import sweep_from_records
    from emergence_jax.laws.truth import model_free_truth

    task, _, metric = target.partition(":")
    out = {}
    for family in sorted(set(data.families)):
        rows = [r for r in records if r["model"].split("@")[0] == family and r.get("task", "task") == task and r["train_examples"] == 0 and (not metric or r.get("metric") == metric)]
        if len({r["model"] for r in rows}) < 2:
            continue
        truth = model_free_truth(sweep_from_records(rows, source=family))
        at = emergence_flops(fit, data, family)
        predicted = loss_at_flops(data, family, at) if at is not None else None
        first = (truth.get("first_emerged") or {}).get("model")
        first_flops = float(data.flops[data.models == first][0]) if first in set(data.models) else None
        forecast = None if first_flops is None else bool(first_flops > cutoff)
        entry = {"truth": truth, "truth_beyond_cutoff": forecast, "predicted_emergence_flops": at, "predicted_emergence_loss": predicted}
        if predicted is not None and truth["status"] == "located":
            entry["error_nats"] = abs(predicted - truth["midpoint"])
        out[family] = entry
    return out
