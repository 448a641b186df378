"""TFDS builders: each dataset builds from fixture files in its original on-disk format into
array_record files, and reads back, without TensorFlow, exactly what the original files say."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from emergence_jax.data.builders import BUILDERS, load_split, prepare_dataset
from emergence_jax.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures" / "data"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("tfds")
    for dataset, manual in [("mmlu", "mmlu"), ("gsm8k", "gsm8k"), ("commonsense_qa", "commonsense_qa"), ("cola", "cola"), ("apps", "apps")]:
        prepare_dataset(dataset, data_dir=root, manual_dir=FIXTURES / manual)
    return str(root)


def _csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_mmlu_round_trip_matches_the_csv_files(data_dir):
    for split, folder in [("dev", "dev"), ("validation", "val"), ("test", "test")]:
        expected = []
        for path in sorted((FIXTURES / "mmlu" / "data" / folder).glob("*.csv")):
            subject = path.name.rsplit("_", 1)[0]
            expected += [(subject, row[0], row[1:5], "ABCD".index(row[5])) for row in _csv_rows(path)]
        examples = load_split("mmlu", data_dir=data_dir, split=split)
        assert [(e["subject"], e["question"], e["choices"], e["answer"]) for e in examples] == expected
    # A quoted question with an embedded newline and doubled quotes survives intact.
    test = load_split("mmlu", data_dir=data_dir, split="test")
    assert test[-1]["question"] == "Which of the following statements is true of the pleura?\n(Choose the best answer.)"
    assert test[-1]["choices"][0] == 'The visceral pleura receives somatic nerve fibres, "sharp" pain'
    auxiliary = load_split("mmlu", data_dir=data_dir, split="auxiliary_train")
    assert [e["subject"] for e in auxiliary] == ["arc_easy"] * 5 + ["obqa"] * 3
    assert len({e["id"] for e in auxiliary}) == len(auxiliary)


def test_mmlu_builds_from_the_original_tar_archive(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    with tarfile.open(manual / "data.tar", "w") as archive:
        archive.add(FIXTURES / "mmlu" / "data", arcname="data")
    prepare_dataset("mmlu", data_dir=tmp_path / "tfds", manual_dir=manual)
    from_archive = load_split("mmlu", data_dir=str(tmp_path / "tfds"), split="test")
    expected = sum(len(_csv_rows(p)) for p in (FIXTURES / "mmlu" / "data" / "test").glob("*.csv"))
    assert len(from_archive) == expected
    assert from_archive[0]["id"] == "test/abstract_algebra/0"


def test_gsm8k_round_trip_and_final_answer(data_dir):
    for split in ("train", "test"):
        lines = [json.loads(line) for line in (FIXTURES / "gsm8k" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]
        examples = load_split("gsm8k", data_dir=data_dir, split=split)
        assert [(e["question"], e["solution"]) for e in examples] == [(r["question"], r["answer"]) for r in lines]
    answers = [e["answer"] for e in load_split("gsm8k", data_dir=data_dir, split="train")]
    assert answers[0] == "72" and "1,264,500" in answers and "-7" in answers


def test_commonsense_qa_round_trip(data_dir):
    records = [json.loads(line) for line in (FIXTURES / "commonsense_qa" / "dev_rand_split.jsonl").read_text().splitlines()]
    examples = load_split("commonsense_qa", data_dir=data_dir, split="validation")
    assert [e["id"] for e in examples] == [r["id"] for r in records]
    assert [e["answer"] for e in examples] == ["ABCDE".index(r["answerKey"]) for r in records]
    assert examples[0]["choices"] == [c["text"] for c in records[0]["question"]["choices"]]
    assert len(load_split("commonsense_qa", data_dir=data_dir, split="train")) == 8


def test_cola_round_trip_and_the_authors_layout_gives_the_same_data(data_dir, tmp_path):
    rows = [line.split("\t") for line in (FIXTURES / "cola" / "CoLA" / "dev.tsv").read_text().splitlines()]
    examples = load_split("cola", data_dir=data_dir, split="validation")
    assert [(e["sentence"], e["label"]) for e in examples] == [(r[3], int(r[1])) for r in rows]
    # The authors' cola_public_1.1.zip names the same files in_domain_{train,dev}.tsv.
    with zipfile.ZipFile(tmp_path / "cola_public_1.1.zip", "w") as archive:
        archive.write(FIXTURES / "cola" / "CoLA" / "train.tsv", "cola_public/raw/in_domain_train.tsv")
        archive.write(FIXTURES / "cola" / "CoLA" / "dev.tsv", "cola_public/raw/in_domain_dev.tsv")
    prepare_dataset("cola", data_dir=tmp_path / "tfds", manual_dir=tmp_path)
    for split in ("train", "validation"):
        assert load_split("cola", data_dir=str(tmp_path / "tfds"), split=split) == load_split("cola", data_dir=data_dir, split=split)


def test_apps_problem_folders_and_jsonl_form_give_the_same_data(data_dir, tmp_path):
    prepare_dataset("apps", data_dir=tmp_path, manual_dir=FIXTURES / "apps_jsonl")
    for split in ("train", "test"):
        from_folders = load_split("apps", data_dir=data_dir, split=split)
        assert from_folders == load_split("apps", data_dir=str(tmp_path), split=split)
    train = load_split("apps", data_dir=data_dir, split="train")
    assert [e["id"] for e in train] == ["train/0000", "train/0001", "train/0002", "train/0003"]
    assert train[2]["starter_code"].startswith("class Solution:")
    assert json.loads(train[2]["input_output"])["fn_name"] == "count_vowels"
    assert train[3]["input_output"] == "" and train[3]["solutions"] == []


def test_reading_needs_no_tensorflow(data_dir):
    """With TensorFlow not installed, a fresh interpreter reads every prepared split and never
    imports TensorFlow."""
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed here; this checks the environment without it")
    script = (
        "import sys\n"
        "from emergence_jax.data.builders import BUILDERS, load_split\n"
        f"data_dir = {data_dir!r}\n"
        "for name, cls in BUILDERS.items():\n"
        "    for split in cls(data_dir=data_dir).info.splits:\n"
        "        assert len(load_split(name, data_dir=data_dir, split=split)) > 0\n"
        "assert not any(module.split('.')[0] == 'tensorflow' for module in sys.modules)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
    for cls in BUILDERS.values():
        assert all(path.name.count(".array_record") for path in Path(data_dir, cls.name, "1.0.0").glob("*-*-of-*"))


def test_bad_input_is_a_user_error(tmp_path):
    bad = tmp_path / "manual" / "data"
    shutil.copytree(FIXTURES / "mmlu" / "data", bad)
    (bad / "test" / "anatomy_test.csv").write_text("a question,only,three\n", encoding="utf-8")
    with pytest.raises(UserError, match="anatomy_test.csv: row 1"):
        prepare_dataset("mmlu", data_dir=tmp_path / "tfds", manual_dir=tmp_path / "manual")
    with pytest.raises(UserError, match="not prepared"):
        load_split("gsm8k", data_dir=str(tmp_path / "empty"), split="test")
    with pytest.raises(UserError, match="unknown dataset"):
        load_split("squad", data_dir=str(tmp_path), split="test")
