"""The results record: the one contract between heavy runs (evaluate, finetune) and fits (laws).

One row per (checkpoint, task, finetuning amount, seed, shots[, metric]); CSV or JSONL with the same
columns (DESIGN.md §4). Required columns:

| column          | type  | meaning                                              |
|-----------------|-------|------------------------------------------------------|
| model           | str   | checkpoint id, e.g. ``open_llama_3b@step200000``     |
| pretrain_loss   | float | nats/token on the held-out corpus ``loss_corpus``    |
| train_examples  | int   | finetuning examples D; 0 = not finetuned (few-shot)  |
| shots           | int   | in-context examples at evaluation                    |
| accuracy        | float | in [0, 1]                                            |
| n_eval          | int   | evaluation examples behind ``accuracy`` (> 0)        |
| chance          | float | accuracy of random guessing, in [0, 1]               |

Optional columns with a known type are checked too; unknown columns are kept as strings.
Every problem is a `UserError` naming the file, line and column.
"""

from __future__ import annotations

import csv
import json
import math
import os
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from emergence_jax.errors import UserError
from emergence_jax.io import atomic_write_text

REQUIRED_COLUMNS = ("model", "pretrain_loss", "train_examples", "shots", "accuracy", "n_eval", "chance")

# column -> (type, lowest allowed, highest allowed)
_FLOAT_COLUMNS = {
    "pretrain_loss": (0.0, math.inf),
    "accuracy": (0.0, 1.0),
    "chance": (0.0, 1.0),
    "params": (0.0, math.inf),
    "tokens": (0.0, math.inf),
    "flops": (0.0, math.inf),
    "brier": (0.0, 2.0),
    "correct_prob": (0.0, 1.0),
    "logprob": (-math.inf, 0.0),
}
_INT_COLUMNS = {
    "train_examples": (0, math.inf),
    "shots": (0, math.inf),
    "n_eval": (1, math.inf),
    "seed": (-math.inf, math.inf),
    "step": (0, math.inf),
}
_STR_COLUMNS = ("model", "task", "loss_corpus", "metric")

# The columns that identify a row; two rows with the same key must carry the same values.
KEY_COLUMNS = ("model", "task", "train_examples", "seed", "shots", "metric")


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    raise UserError(f"{path}: unknown results format '{suffix}'; use a .csv or .jsonl file")


def _raw_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, raw row) pairs as stored in the file."""
    if not path.exists():
        raise UserError(f"{path}: results file not found; check the path")
    fmt = _format_of(path)
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise UserError(f"{path}: results file is empty; it needs a header and at least one row")
    if fmt == "csv":
        reader = csv.DictReader(text.splitlines())
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise UserError(f"{path}: missing required column '{missing[0]}' (required: {', '.join(REQUIRED_COLUMNS)})")
        rows = []
        for index, raw in enumerate(reader):
            if None in raw:
                raise UserError(f"{path}: line {index + 2}: more fields than the header has columns")
            rows.append((index + 2, {k: v for k, v in raw.items() if v not in ("", None)}))
        if not rows:
            raise UserError(f"{path}: results file has a header but no rows")
        return rows
    rows = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: line {line_number}: not valid JSON ({err.msg}); one JSON object per line") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path}: line {line_number}: expected a JSON object, got {type(raw).__name__}")
        rows.append((line_number, {k: v for k, v in raw.items() if v is not None}))
    return rows


def _where(source: str, line: int | None, column: str) -> str:
    return f"{source}: line {line}, column '{column}'" if line is not None else f"{source}: column '{column}'"


def validate_row(raw: dict, *, source: str, line: int | None = None) -> dict:
    """Return a typed copy of one row, or raise `UserError` naming the source, line and column."""
    for column in REQUIRED_COLUMNS:
        if column not in raw:
            raise UserError(f"{_where(source, line, column)}: missing required value")
    row: dict = {}
    for column, value in raw.items():
        where = _where(source, line, column)
        if column in _FLOAT_COLUMNS:
            row[column] = _to_float(value, where, *_FLOAT_COLUMNS[column])
        elif column in _INT_COLUMNS:
            row[column] = _to_int(value, where, *_INT_COLUMNS[column])
        else:
            row[column] = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    if row["model"].strip() == "":
        raise UserError(f"{_where(source, line, 'model')}: empty checkpoint id")
    return row


def _to_float(value, where: str, low: float, high: float) -> float:
    if isinstance(value, bool):
        raise UserError(f"{where}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: expected a number, got {value!r}") from None
    if math.isnan(number):
        raise UserError(f"{where}: value is NaN; remove the row or fill in the value")
    if not low <= number <= high:
        raise UserError(f"{where}: {number} is outside [{low}, {high}]")
    return number


def _to_int(value, where: str, low: float, high: float) -> int:
    number = _to_float(value, where, low, high)
    if number != int(number):
        raise UserError(f"{where}: expected a whole number, got {value!r}")
    return int(number)


def _row_key(row: dict) -> tuple:
    return tuple(row.get(c) for c in KEY_COLUMNS)


def _deduplicate(located_rows: Iterable[tuple[dict, str, int | None]]) -> list[dict]:
    """Drop exact duplicates; a repeated key (model, task, train_examples, seed, shots, metric)
    with different values is an error naming both places."""
    seen: dict[tuple, tuple[dict, str]] = {}
    rows: list[dict] = []
    for row, source, line in located_rows:
        key = _row_key(row)
        if key in seen:
            previous, previous_where = seen[key]
            if previous != row:
                column = next(c for c in sorted(set(previous) | set(row)) if previous.get(c) != row.get(c))
                raise UserError(
                    f"{_where(source, line, column)}: duplicate of the row at {previous_where} "
                    f"with a different value ({previous.get(column)!r} vs {row.get(column)!r}); keep one"
                )
            continue
        seen[key] = (row, source if line is None else f"{source} line {line}")
        rows.append(row)
    return rows


def read_records(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[dict]:
    """Read and validate one or more results files (CSV or JSONL) into typed row dicts.

    Exact duplicate rows are kept once; rows with the same key but different values are an error.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    located = []
    for path in map(Path, paths):
        for line, raw in _raw_rows(path):
            located.append((validate_row(raw, source=str(path), line=line), str(path), line))
    return _deduplicate(located)


def _columns_of(rows: Iterable[dict]) -> list[str]:
    columns = list(REQUIRED_COLUMNS)
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    return columns


def write_records(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """Validate `rows` and write them to `path` (CSV or JSONL by suffix), atomically."""
    path = Path(path)
    fmt = _format_of(path)
    typed = _deduplicate((validate_row(row, source=str(path), line=None), str(path), None) for row in rows)
    if not typed:
        raise UserError(f"{path}: no rows to write")
    buffer = io.StringIO(newline="")
    if fmt == "csv":
        writer = csv.DictWriter(buffer, fieldnames=_columns_of(typed), lineterminator="\n")
        writer.writeheader()
        for row in typed:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
    else:
        for row in typed:
            buffer.write(json.dumps(row) + "\n")
    atomic_write_text(path, buffer.getvalue())


def _csv_value(value):
    return repr(value) if isinstance(value, float) else value


def append_records(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """Append validated rows to `path` (created if absent), atomically: the file is rewritten to a
    temporary path and renamed, so a crash never leaves half a row. A row whose key is already in
    the file replaces nothing: identical rows are skipped, conflicting ones are an error (and the
    file is left as it was)."""
    path = Path(path)
    existing = read_records(path) if path.exists() and path.stat().st_size > 0 else []
    write_records(path, existing + list(rows))
