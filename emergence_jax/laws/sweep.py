"""Results rows -> the arrays a fit needs, for one task and one metric."""

from __future__ import annotations

import dataclasses

import numpy as np

from emergence_jax.errors import UserError
from emergence_jax.records import correct_counts


@dataclasses.dataclass(frozen=True)
class Sweep:
    """One task's rows as arrays (all of length n_rows).

    loss: pretraining loss, nats/token. train_examples: D (0 = few-shot). correct: correct answers
    (accuracy·n_eval, rounded). n_eval: evaluation examples. chance: accuracy of guessing.
    models: checkpoint ids. flops / params: training FLOPs and parameter counts (NaN where unknown).
    shots: in-context examples at evaluation. seeds: finetuning subset seed (NaN where unknown).
    """

    loss: np.ndarray
    train_examples: np.ndarray
    correct: np.ndarray
    n_eval: np.ndarray
    chance: np.ndarray
    shots: np.ndarray
    models: np.ndarray
    flops: np.ndarray
    params: np.ndarray
    seeds: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.loss.shape[0])

    @property
    def accuracy(self) -> np.ndarray:
        return self.correct / self.n_eval

    @property
    def finetuned(self) -> bool:
        """Whether any row is finetuned (then the emergence law E(D) is fitted)."""
        return bool(np.any(self.train_examples > 0))

    def subset(self, mask: np.ndarray) -> Sweep:
        return Sweep(**{f.name: getattr(self, f.name)[mask] for f in dataclasses.fields(self)})

    def fewshot(self) -> Sweep:
        return self.subset(self.train_examples == 0)


def sweep_from_records(rows: list[dict], *, task: str | None = None, metric: str | None = None, source: str = "results") -> Sweep:
    """Select one task and metric from validated results rows.

    With several tasks (or metrics) present and none named, this is an error listing them, so a fit
    never mixes tasks silently.
    """
    rows = _select(rows, "task", task, source)
    rows = _select(rows, "metric", metric, source)
    if not rows:
        raise UserError(f"{source}: no rows left after selecting task={task!r}, metric={metric!r}")

    def column(name, default=np.nan):
        return np.array([row.get(name, default) for row in rows], dtype=float)

    n_eval = column("n_eval")
    return Sweep(
        loss=column("pretrain_loss"),
        train_examples=column("train_examples"),
        correct=correct_counts(rows, source=source),
        n_eval=n_eval,
        chance=column("chance"),
        shots=column("shots"),
        models=np.array([row["model"] for row in rows]),
        flops=column("flops"),
        params=column("params"),
        seeds=column("seed"),
    )


def _select(rows: list[dict], column: str, wanted: str | None, source: str) -> list[dict]:
    values = sorted({row[column] for row in rows if column in row})
    if wanted is not None:
        if wanted not in values:
            raise UserError(f"{source}: no rows with {column}={wanted!r}; present: {', '.join(values) or 'none'}")
        return [row for row in rows if row.get(column) == wanted]
    if len(values) > 1:
        raise UserError(f"{source}: rows hold several values of '{column}' ({', '.join(values)}); choose one with --{column}")
    return rows
