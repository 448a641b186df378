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
Every problem is a `UserError` naming the file, line and column. The rules:

- Files are UTF-8 (a byte-order mark is accepted), regular files of at most `MAX_FILE_BYTES`; any
  value is at most `MAX_FIELD_CHARS` characters; JSON lines nest at most `MAX_JSON_DEPTH` deep.
- **Whitespace:** leading and trailing whitespace is stripped from column names and from every
  string value, so ``" m1"`` and ``"m1"`` are the same model. Control characters (newlines, NUL, …)
  in names or values are an error.
- **Numbers** must be finite decimal numbers (no NaN/inf, no ``1e400``, no booleans); whole-number
  columns accept ``3`` or ``3.0`` but not ``3.5``, and at most 2^53 in magnitude (beyond that a float
  cannot hold them exactly and two seeds could merge).
- Duplicate column names (CSV) or keys (JSON) are an error. Blank lines are skipped.
- Line numbers are the physical line where the row starts (a quoted CSV field may span lines).
- A last line without a newline that does not parse (a row cut by a writer killed mid-append) is
  skipped with a warning; `append_records` cuts it off under the file lock.
- Rows with the same key (`KEY_COLUMNS`) must be identical (kept once) or it is an error.
- **Counts:** the fit treats ``accuracy × n_eval`` as a number of correct answers (`correct_counts`):
  it must be within `COUNT_TOLERANCE` (in accuracy) of a whole count k/n_eval, else it is an error,
  not a silent rounding. Rows of mean scores (e.g. APPS test-case accuracy) may be stored, but are
  refused by the fit.

Writing: `write_records` replaces a file atomically; `append_records` adds rows under an exclusive
`flock`, writing only the new rows (see `emergence_jax.io`). CSV rows written here quote their last
field, so a row cut short by a killed writer always shows as an unterminated quote.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from emergence_jax.errors import UserError
from emergence_jax.io import atomic_write_text, decode_utf8, loads_json, locked_file, read_bytes

REQUIRED_COLUMNS = ("model", "pretrain_loss", "train_examples", "shots", "accuracy", "n_eval", "chance")

# column -> (lowest allowed, highest allowed)
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

MAX_FILE_BYTES = 1 << 30
"""Largest results file read: 1 GiB (about 10 million rows)."""
MAX_FIELD_CHARS = 131072
"""Longest value (or column name) in a results file: 128 KiB, the CSV module's own field limit."""
MAX_JSON_DEPTH = 16
"""Deepest nesting in one JSON-lines row (rows are flat; nested values are kept as JSON text)."""
EXACT_INT = 2**53
"""Whole numbers beyond this magnitude are refused: a float64 cannot tell them from their neighbours."""
COUNT_TOLERANCE = 1e-4
"""How far (in accuracy) ``accuracy`` may lie from the nearest whole count k/n_eval: rounding it then
moves the fit's data by less than a hundredth of any binomial standard error. Published benchmark
scores rounded to 4-6 decimals pass; accuracy 0.05 with n_eval 10 does not."""

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_NON_FINITE_WORDS = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    raise UserError(f"{path}: unknown results format '{suffix}'; use a .csv or .jsonl file")


# ---------------------------------------------------------------------------------------------------
# Reading


def _read_text(path: Path) -> str:
    _format_of(path)
    text = decode_utf8(read_bytes(path, max_bytes=MAX_FILE_BYTES, what="results file"), source=str(path))
    if not text.strip():
        raise UserError(f"{path}: results file is empty; it needs a header and at least one row")
    return text


def _partial_tail_warning(source: str, line: int) -> None:
    warnings.warn(f"{source}: line {line}: skipped an incomplete last row (no newline; an interrupted append?)", stacklevel=4)


def _csv_records(text: str, source: str) -> list[tuple[int, list[str]]]:
    """(start line, fields) of every non-blank CSV record. A cut-off last record is dropped with a
    warning."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str]]] = []
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            if "field larger than field limit" in str(err):
                raise UserError(f"{source}: line {start}: a field is longer than {MAX_FIELD_CHARS} characters; shorten it") from None
            if not text.endswith("\n") and start == text.count("\n") + 1:  # the last line, cut short
                _partial_tail_warning(source, start)
                break
            if "unexpected end of data" in str(err):
                raise UserError(f"{source}: line {start}: a quoted field is never closed; close the quote") from None
            raise UserError(f"{source}: line {reader.line_num}: not valid CSV ({err}); quote fields that hold commas or quotes") from None
        if any(field.strip() for field in fields):
            records.append((start, fields))
        start = reader.line_num + 1
    return records


def _clean_name(name: str, source: str, line: int) -> str:
    name = name.strip()
    if not name:
        raise UserError(f"{source}: line {line}: an empty column name; name every column (or remove the trailing comma)")
    if len(name) > MAX_FIELD_CHARS:
        raise UserError(f"{source}: line {line}: a column name is longer than {MAX_FIELD_CHARS} characters")
    if _CONTROL.search(name):
        raise UserError(f"{source}: line {line}: column name {name[:60]!r} holds a control character; remove it")
    return name


def _csv_header(fields: list[str], source: str, line: int) -> list[str]:
    header = [_clean_name(name, source, line) for name in fields]
    seen = set()
    for name in header:
        if name in seen:
            raise UserError(f"{source}: line {line}: column '{name}' appears twice in the header; keep one")
        seen.add(name)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise UserError(f"{source}: line {line}: missing required column '{missing[0]}' (required: {', '.join(REQUIRED_COLUMNS)})")
    return header


def _csv_rows(text: str, source: str) -> list[tuple[int, dict]]:
    records = _csv_records(text, source)
    if not records:
        raise UserError(f"{source}: results file is empty; it needs a header and at least one row")
    header_line, header_fields = records[0]
    header = _csv_header(header_fields, source, header_line)
    rows = []
    for index, (line, fields) in enumerate(records[1:], start=1):
        if len(fields) != len(header):
            if index == len(records) - 1 and not text.endswith("\n"):
                _partial_tail_warning(source, line)
                break
            raise UserError(f"{source}: line {line}: {len(fields)} fields but the header has {len(header)} columns; fix the row")
        rows.append((line, {name: value for name, value in zip(header, fields) if value.strip() != ""}))
    if not rows:
        raise UserError(f"{source}: results file has a header but no rows")
    return rows


def _jsonl_rows(text: str, source: str) -> list[tuple[int, dict]]:
    lines = text.split("\n")
    rows = []
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        last = line_number == len(lines)  # only a line without a newline can be the last element
        try:
            raw = loads_json(line, source=source, line=line_number, max_depth=MAX_JSON_DEPTH)
        except UserError:
            if last:
                _partial_tail_warning(source, line_number)
                break
            raise
        if not isinstance(raw, dict):
            raise UserError(f"{source}: line {line_number}: expected a JSON object, got {type(raw).__name__}")
        row = {}
        for key, value in raw.items():
            name = _clean_name(key, source, line_number)
            if name in row:
                raise UserError(f"{source}: line {line_number}: key '{name}' appears twice (after stripping whitespace); keep one")
            if value is not None:
                row[name] = value
        rows.append((line_number, row))
    if not rows:
        raise UserError(f"{source}: results file has no rows")
    return rows


def _raw_rows(path: Path) -> list[tuple[int, dict]]:
    """(line number, raw row) pairs as stored in the file."""
    text = _read_text(path)
    return _csv_rows(text, str(path)) if _format_of(path) == "csv" else _jsonl_rows(text, str(path))


def _where(source: str, line: int | None, column: str) -> str:
    return f"{source}: line {line}, column '{column}'" if line is not None else f"{source}: column '{column}'"


def validate_row(raw: dict, *, source: str, line: int | None = None) -> dict:
    """Return a typed copy of one row, or raise `UserError` naming the source, line and column."""
    for column in REQUIRED_COLUMNS:
        if column not in raw or (isinstance(raw[column], str) and not raw[column].strip()):
            raise UserError(f"{_where(source, line, column)}: missing required value")
    row: dict = {}
    for column, value in raw.items():
        where = _where(source, line, column)
        if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
            raise UserError(f"{where}: value is longer than {MAX_FIELD_CHARS} characters; shorten it")
        if column in _FLOAT_COLUMNS:
            row[column] = _to_float(value, where, *_FLOAT_COLUMNS[column])
        elif column in _INT_COLUMNS:
            row[column] = _to_int(value, where, *_INT_COLUMNS[column])
        else:
            row[column] = _to_str(value, where)
    if row["model"] == "":
        raise UserError(f"{_where(source, line, 'model')}: empty checkpoint id")
    return row


def _to_str(value, where: str) -> str:
    if type(value) is str:
        text = value.strip()
    elif isinstance(value, (dict, list)):
        text = json.dumps(value)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{where}: value is not finite; write a number or leave it empty")
    else:
        text = str(value).strip()
    if len(text) > MAX_FIELD_CHARS:
        raise UserError(f"{where}: value is longer than {MAX_FIELD_CHARS} characters; shorten it")
    if _CONTROL.search(text):
        raise UserError(f"{where}: value {text[:60]!r} holds a control character (newline, NUL, ...); remove it")
    return text


def _parse_number(value, where: str, *, whole: bool) -> float | int:
    """A JSON number or a decimal string: an int when `whole` and written as an integer, else a
    finite float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        shown = value if isinstance(value, bool) else type(value).__name__
        raise UserError(f"{where}: expected a number, got {shown!r}")
    if type(value) is str:
        text = value.strip()
        if whole and text.isdigit() and text.isascii():
            if len(text) > 20:
                raise UserError(f"{where}: {text[:24]}... has {len(text)} digits, beyond the exactly representable range (|x| <= 2^53)")
            return int(text)
        try:
            value = float(text)  # accepts more than decimals ('1_0', 'infinity', non-ASCII digits): checked next
        except ValueError:
            raise UserError(f"{where}: expected a number, got {text[:60]!r}") from None
        if not math.isfinite(value) and text.lower() in _NON_FINITE_WORDS:
            word = "NaN" if "nan" in text.lower() else "infinite"
            raise UserError(f"{where}: value is {word}; write a finite number (or remove the row)")
        if not text.isascii() or "_" in text:
            raise UserError(f"{where}: expected a number, got {text[:60]!r}")
    if isinstance(value, float):
        if math.isnan(value):
            raise UserError(f"{where}: value is NaN; write a finite number (or remove the row)")
        if not math.isfinite(value):
            raise UserError(f"{where}: value is infinite (or too large for a float); write a finite number")
    return value


def _to_float(value, where: str, low: float, high: float) -> float:
    number = _parse_number(value, where, whole=False)
    try:
        number = float(number)
    except OverflowError:
        raise UserError(f"{where}: value is too large for a float; write a finite number") from None
    if not math.isfinite(number):
        raise UserError(f"{where}: value is infinite (or too large for a float); write a finite number")
    if not low <= number <= high:
        raise UserError(f"{where}: {number} is outside [{low}, {high}]")
    return number


def _to_int(value, where: str, low: float, high: float) -> int:
    number = _parse_number(value, where, whole=True)
    if isinstance(number, float):
        if number != int(number):
            raise UserError(f"{where}: expected a whole number, got {value!r}")
        if abs(number) > EXACT_INT:
            raise UserError(f"{where}: {value!r} is beyond the exactly representable range (|x| <= 2^53)")
        number = int(number)
    if abs(number) > EXACT_INT:
        raise UserError(f"{where}: {number} is beyond the exactly representable range (|x| <= 2^53)")
    if not low <= number <= high:
        raise UserError(f"{where}: {number} is outside [{low}, {high}]")
    return number


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
                _conflict(previous, previous_where, row, _where(source, line, "{column}"))
            continue
        seen[key] = (row, source if line is None else f"{source} line {line}")
        rows.append(row)
    return rows


def _conflict(previous: dict, previous_where: str, row: dict, where_template: str) -> None:
    column = next(c for c in sorted(set(previous) | set(row)) if previous.get(c) != row.get(c))
    raise UserError(
        f"{where_template.replace('{column}', column)}: duplicate of the row at {previous_where} "
        f"with a different value ({previous.get(column)!r} vs {row.get(column)!r}); keep one"
    )


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


def correct_counts(rows: Sequence[dict], *, source: str = "results") -> np.ndarray:
    """The number of correct answers behind each row, ``accuracy × n_eval``, as whole numbers.

    A row whose accuracy is more than `COUNT_TOLERANCE` from every k/n_eval is a `UserError` (it
    holds a mean score or a typo, not a count), instead of being rounded silently.
    """
    accuracy = np.array([row["accuracy"] for row in rows], dtype=float)
    n_eval = np.array([row["n_eval"] for row in rows], dtype=float)
    correct = np.round(accuracy * n_eval)
    bad = np.flatnonzero(np.abs(accuracy - correct / n_eval) > COUNT_TOLERANCE)
    if bad.size:
        row = rows[int(bad[0])]
        ident = ", ".join(f"{c}={row[c]!r}" for c in KEY_COLUMNS if c in row)
        raise UserError(
            f"{source}: row {ident}: accuracy {row['accuracy']} × n_eval {row['n_eval']} = {row['accuracy'] * row['n_eval']:.4g} "
            f"is not a whole number of correct answers ({len(bad)} such rows); write accuracy = correct / n_eval "
            f"(to within {COUNT_TOLERANCE}) or select a count metric"
        )
    return correct


# ---------------------------------------------------------------------------------------------------
# Writing


def _columns_of(rows: Iterable[dict]) -> list[str]:
    columns = list(REQUIRED_COLUMNS)
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    return columns


def _ordered(row: dict) -> dict:
    """`row` with the required columns first (a canonical order, so rewritten rows compare equal)."""
    return {**{c: row[c] for c in REQUIRED_COLUMNS}, **{c: v for c, v in row.items() if c not in REQUIRED_COLUMNS}}


def _cell(value) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _csv_line(row: dict, columns: Sequence[str]) -> str:
    """One CSV line (no newline) in `columns` order; the last field is always quoted."""
    cells = [_cell(row.get(c)) for c in columns]
    head = [_quote(c) if any(ch in c for ch in ',"') else c for c in cells[:-1]]
    return ",".join([*head, _quote(cells[-1])])


def _json_line(row: dict) -> str:
    return json.dumps(_ordered(row), ensure_ascii=False, allow_nan=False)


def _render(fmt: str, rows: Sequence[dict]) -> str:
    if fmt == "csv":
        columns = _columns_of(rows)
        return ",".join(columns) + "\n" + "".join(_csv_line(row, columns) + "\n" for row in rows)
    return "".join(_json_line(row) + "\n" for row in rows)


def write_records(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """Validate `rows` and write them to `path` (CSV or JSONL by suffix), atomically, under the
    same lock as `append_records`."""
    path = Path(path)
    fmt = _format_of(path)
    typed = _deduplicate((validate_row(row, source=str(path), line=None), str(path), None) for row in rows)
    if not typed:
        raise UserError(f"{path}: no rows to write")
    text = _render(fmt, typed)
    with locked_file(path):
        atomic_write_text(path, text)


def _complete_line(line: bytes, fmt: str, header: list[str] | None) -> bool:
    """Whether `line` (the file's last, without a newline) is a whole row rather than a cut one."""
    try:
        text = line.decode("utf-8").strip("\r")
    except UnicodeDecodeError:
        return False
    if fmt == "jsonl":
        try:
            return isinstance(loads_json(text, source="", max_depth=MAX_JSON_DEPTH), dict)
        except UserError:
            return False
    try:
        fields = next(csv.reader([text], strict=True))
    except (csv.Error, StopIteration):
        return False
    if header is None:  # the line is the header itself
        return all(c in [f.strip() for f in fields] for c in REQUIRED_COLUMNS)
    return len(fields) == len(header)


def _candidate_lines(data: bytes, needles: set[bytes]) -> list[tuple[int, bytes]]:
    """(line number, line) of every line that contains one of `needles`."""
    starts = set()
    for needle in needles:  # bytes.find per needle: a fast substring search (a regex alternation is ~10x slower)
        position = data.find(needle)
        while position >= 0:
            start = data.rfind(b"\n", 0, position) + 1
            starts.add(start)
            end = data.find(b"\n", position)
            if end < 0:
                break
            position = data.find(needle, end)
    found: list[tuple[int, bytes]] = []
    line_number, counted_to = 1, 0
    for start in sorted(starts):
        end = data.find(b"\n", start)
        line_number += data.count(b"\n", counted_to, start)
        counted_to = start
        found.append((line_number, data[start : len(data) if end < 0 else end]))
    return found


def _needles(fmt: str, models: Iterable[str]) -> set[bytes]:
    needles: set[bytes] = set()
    for model in models:
        needles.add(model.encode("utf-8"))
        if fmt == "csv":
            needles.add(model.replace('"', '""').encode("utf-8"))
        else:
            needles.add(json.dumps(model)[1:-1].encode("ascii"))
            needles.add(json.dumps(model, ensure_ascii=False)[1:-1].encode("utf-8"))
    return needles


def append_records(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """Append validated rows to `path` (created if absent) under an exclusive file lock, writing
    only the new rows in one write.

    A new row whose key is already in the file is skipped when identical and an error (nothing
    written) when it differs; the check parses only the lines that mention the new rows' model ids
    (as written by this module: a hand-written id with other JSON escapes is left to `read_records`,
    which reports any conflict), so an append costs about one read of the file. A CSV whose header lacks a column of the new rows
    is rewritten whole (atomically) with the widened header. A partial last line left by a killed
    writer is cut off first (with a warning).
    """
    path = Path(path)
    fmt = _format_of(path)
    source = str(path)
    typed = [_ordered(r) for r in _deduplicate((validate_row(row, source=source, line=None), source, None) for row in rows)]
    if not typed:
        return
    with locked_file(path) as handle:
        data = handle.read()
        start = data.rfind(b"\n") + 1  # the last line's start; data[start:] is empty or lacks its newline
        decode_utf8(data[:start], source=source)  # refuse to add to a file that is not UTF-8 (nothing touched yet)
        header: list[str] | None = None
        if fmt == "csv" and start:
            first = decode_utf8(data[: data.index(b"\n") + 1], source=source)
            header = _csv_header(next(csv.reader([first.strip("\r\n")])), source, 1)
        prefix = b""
        if start < len(data):
            if _complete_line(data[start:], fmt, header):
                prefix = b"\n"
            elif start == 0:  # a single unfinished line: not evidently ours, so never cut
                raise UserError(f"{source}: holds one line without a newline that is not a complete {fmt.upper()} {'header' if fmt == 'csv' else 'row'}; fix or remove the file")
            else:
                handle.truncate(start)
                warnings.warn(f"{source}: removed an incomplete last line ({len(data) - start} bytes, no newline) left by an interrupted append", stacklevel=2)
                data = data[:start]
        if fmt == "csv" and header is None and data.strip():
            first = decode_utf8(data, source=source)
            header = _csv_header(next(csv.reader([first.strip("\r\n")])), source, 1)
        new = _new_rows(data, fmt, header, typed, source)
        if not new:
            if prefix:
                handle.append(prefix)
            return
        if fmt == "csv":
            if header is None:
                columns = _columns_of(new)
                block = ",".join(columns) + "\n" + "".join(_csv_line(r, columns) + "\n" for r in new)
            elif all(c in header for r in new for c in r):
                block = "".join(_csv_line(r, header) + "\n" for r in new)
            else:  # new columns: rewrite the whole file with the widened header, still under the lock
                existing = [validate_row(raw, source=source, line=line) for line, raw in _csv_rows(decode_utf8(data, source=source), source)]
                everything = _deduplicate([(r, source, None) for r in existing + new])
                atomic_write_text(path, _render("csv", [_ordered(r) for r in everything]))
                return
        else:
            block = "".join(_json_line(r) + "\n" for r in new)
        handle.append(prefix + block.encode("utf-8"))


def _new_rows(data: bytes, fmt: str, header: list[str] | None, typed: list[dict], source: str) -> list[dict]:
    """The rows of `typed` not already in the file (identical ones dropped; a conflict raises)."""
    if not data.strip():
        return typed
    wanted = {_row_key(r): r for r in typed}
    for line_number, line in _candidate_lines(data, _needles(fmt, {r["model"] for r in typed})):
        existing = _parse_line(line, fmt, header, source, line_number)
        if existing is None:
            continue
        key = _row_key(existing)
        if key in wanted:
            if wanted[key] != existing:
                _conflict(existing, f"{source} line {line_number}", wanted[key], _where(source, None, "{column}") + " (new row)")
            del wanted[key]
    return [r for r in typed if _row_key(r) in wanted]


def _parse_line(line: bytes, fmt: str, header: list[str] | None, source: str, line_number: int) -> dict | None:
    """The typed row on one physical line, or None when the line is not a whole valid row by
    itself (part of a multi-line CSV record, a bad row: `read_records` reports those)."""
    try:
        text = line.decode("utf-8").strip("\r")
        if fmt == "csv":
            fields = next(csv.reader([text], strict=True))
            if header is None or len(fields) != len(header):
                return None
            raw = {name: value for name, value in zip(header, fields) if value.strip() != ""}
        else:
            raw = loads_json(text, source=source, line=line_number, max_depth=MAX_JSON_DEPTH)
            if not isinstance(raw, dict):
                return None
            raw = {k.strip(): v for k, v in raw.items() if v is not None}
        return validate_row(raw, source=source, line=line_number)
    except (UnicodeDecodeError, csv.Error, StopIteration, UserError):
        return None
