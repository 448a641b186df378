"""Results records: round trips, and a one-line error naming file, line and column for each bad input."""

import json

import pytest

from emergence_jax.cli import main
from emergence_jax.errors import UserError
from emergence_jax.records import append_records, read_records, write_records

GOOD = {"model": "m@1", "pretrain_loss": 2.5, "train_examples": 0, "shots": 5, "accuracy": 0.25, "n_eval": 100, "chance": 0.25}
HEADER = "model,pretrain_loss,train_examples,shots,accuracy,n_eval,chance"


def write_csv(tmp_path, *lines, name="r.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_round_trip_keeps_types_and_unknown_columns(tmp_path, suffix):
    rows = [GOOD, {**GOOD, "model": "m@2", "train_examples": 250, "seed": 1, "task": "mmlu", "note": "kept"}]
    path = tmp_path / f"r{suffix}"
    write_records(path, rows)
    back = read_records(path)
    assert back[0] == GOOD
    assert back[1]["train_examples"] == 250 and isinstance(back[1]["train_examples"], int)
    assert back[1]["note"] == "kept"


@pytest.mark.parametrize(
    "line, column, phrase",
    [
        ("m,abc,0,5,0.25,100,0.25", "pretrain_loss", "expected a number"),
        ("m,2.5,0,5,1.5,100,0.25", "accuracy", "outside [0.0, 1.0]"),
        ("m,2.5,-3,5,0.25,100,0.25", "train_examples", "outside"),
        ("m,2.5,0,5,0.25,0,0.25", "n_eval", "outside"),
        ("m,nan,0,5,0.25,100,0.25", "pretrain_loss", "NaN"),
        ("m,2.5,0,5,0.25,100.5,0.25", "n_eval", "whole number"),
        ("m,2.5,0,5,0.25,100,", "chance", "missing required value"),
    ],
)
def test_bad_values_name_file_line_and_column(tmp_path, line, column, phrase):
    path = write_csv(tmp_path, HEADER, "ok,2.5,0,5,0.25,100,0.25", line)
    with pytest.raises(UserError) as err:
        read_records(path)
    message = str(err.value)
    assert f"{path}: line 3, column '{column}'" in message and phrase in message
    assert "\n" not in message


def test_missing_column_empty_file_and_no_rows(tmp_path):
    with pytest.raises(UserError, match="missing required column 'chance'"):
        read_records(write_csv(tmp_path, "model,pretrain_loss,train_examples,shots,accuracy,n_eval", "m,2.5,0,5,0.25,100"))
    with pytest.raises(UserError, match="empty"):
        read_records(write_csv(tmp_path, "", name="empty.csv"))
    with pytest.raises(UserError, match="no rows"):
        read_records(write_csv(tmp_path, HEADER, name="header_only.csv"))
    with pytest.raises(UserError, match="not valid JSON"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps(GOOD) + "\n{oops\n")
        read_records(bad)
    with pytest.raises(UserError, match="unknown results format"):
        read_records(write_csv(tmp_path, HEADER, name="r.txt"))


def test_duplicates_identical_kept_once_conflicting_rejected(tmp_path):
    path = write_csv(tmp_path, HEADER, "m,2.5,0,5,0.25,100,0.25", "m,2.5,0,5,0.25,100,0.25")
    assert len(read_records(path)) == 1
    conflict = write_csv(tmp_path, HEADER, "m,2.5,0,5,0.25,100,0.25", "m,2.5,0,5,0.30,100,0.25", name="c.csv")
    with pytest.raises(UserError, match=r"line 3, column 'accuracy': duplicate of the row at .* line 2"):
        read_records(conflict)


def test_append_is_idempotent_and_leaves_file_intact_on_conflict(tmp_path):
    path = tmp_path / "out.jsonl"
    append_records(path, [GOOD])
    append_records(path, [GOOD, {**GOOD, "model": "m@2"}])
    assert [r["model"] for r in read_records(path)] == ["m@1", "m@2"]
    before = path.read_text()
    with pytest.raises(UserError, match="duplicate"):
        append_records(path, [{**GOOD, "accuracy": 0.9}])
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_cli_reports_bad_records_in_one_line_with_exit_code_2(tmp_path, capsys):
    path = write_csv(tmp_path, HEADER, "m,2.5,0,5,2.0,100,0.25")
    assert main(["fit", "--results", str(path), "--out", str(tmp_path / "fit")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "column 'accuracy'" in err[-1]
    assert not (tmp_path / "fit").exists()
