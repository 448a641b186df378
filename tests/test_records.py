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


def test_bom_is_accepted_and_ids_are_stripped(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + f"{HEADER}\n m1 ,2.5,0,5,0.25,100,0.25\nm1,2.5,0,5,0.25,100,0.25\n".encode())
    rows = read_records(path)
    assert [r["model"] for r in rows] == ["m1"]  # " m1 " and "m1" are one model: whitespace is stripped


def test_exact_integer_range_boundary(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({**GOOD, "seed": 2**53}) + "\n")
    assert read_records(path)[0]["seed"] == 2**53
    path.write_text(json.dumps({**GOOD, "seed": 2**53 + 1}) + "\n")
    with pytest.raises(UserError, match="2\\^53"):
        read_records(path)


def test_correct_counts_tolerance_rule():
    from emergence_jax.records import correct_counts

    rows = [{**GOOD, "accuracy": 0.3333333, "n_eval": 3}, {**GOOD, "accuracy": 0.231169, "n_eval": 14042}]
    assert correct_counts(rows).tolist() == [1.0, 3246.0]  # written with limited digits: still a count
    with pytest.raises(UserError, match="0.5 is not a whole number of correct answers"):
        correct_counts([{**GOOD, "accuracy": 0.05, "n_eval": 10}])  # refused, not rounded to 0 or 1


def test_csv_written_rows_quote_their_last_field_and_round_trip(tmp_path):
    path = tmp_path / "r.csv"
    rows = [{**GOOD, "task": 'quote"d, task', "note": "é"}]
    write_records(path, rows)
    lines = path.read_text().splitlines()
    assert lines[1].endswith(',"é"')
    assert read_records(path)[0]["task"] == 'quote"d, task'


def test_append_with_a_new_column_widens_the_header(tmp_path):
    path = tmp_path / "r.csv"
    append_records(path, [GOOD])
    append_records(path, [{**GOOD, "model": "m2", "seed": 3}])
    rows = read_records(path)
    assert path.read_text().splitlines()[0].endswith(",seed")
    assert [r.get("seed") for r in rows] == [None, 3]
    append_records(path, [{**GOOD, "model": "m3"}])  # fewer columns than the header: empty cells
    assert [r["model"] for r in read_records(path)] == ["m@1", "m2", "m3"]


def test_append_refuses_a_foreign_csv(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="missing required column"):
        append_records(path, [GOOD])
    assert path.read_text() == "a,b\n1,2\n"


def test_append_never_cuts_a_lone_unfinished_line(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text("not json, no newline")
    with pytest.raises(UserError, match="one line without a newline"):
        append_records(path, [GOOD])
    assert path.read_text() == "not json, no newline"
