"""APPS (Hendrycks et al. 2021) from the authors' `APPS.tar.gz`, or the Hugging Face JSONL form.

Original layout: `APPS/{train,test}/NNNN/` with `question.txt`, `input_output.json`
(`{"inputs": [...], "outputs": [...], "fn_name": optional}`; absent for some train problems),
`solutions.json` (a list of Python programs; absent for some), `metadata.json` (`difficulty`, `url`)
and an optional `starter_code.py`. The Hugging Face form (`codeparrot/apps`) has `train.jsonl` and
`test.jsonl` whose records carry the same contents as strings (`question`, `input_output`,
`solutions`, `starter_code`, `difficulty`, `url`, `problem_id`).
Splits: `train` and `test` (5000 problems each), ordered by problem number.
"""

from __future__ import annotations

import json

import tensorflow_datasets as tfds
from etils import epath

from emergence_jax.data.builders.source_files import locate_source
from emergence_jax.errors import UserError

DATA_URL = "https://people.eecs.berkeley.edu/~hendrycks/APPS.tar.gz"
SPLITS = ("train", "test")


def _is_problem_folder_root(folder: epath.Path) -> bool:
    return all((folder / split).is_dir() for split in SPLITS) and any((folder / "test").glob("*/question.txt"))


def _is_jsonl_root(folder: epath.Path) -> bool:
    if not all((folder / f"{split}.jsonl").is_file() for split in SPLITS):
        return False
    with (folder / "test.jsonl").open(encoding="utf-8") as f:
        first_line = f.readline()
    try:
        return "input_output" in json.loads(first_line)
    except json.JSONDecodeError:
        return False


def _read_text(path: epath.Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


class EmergenceApps(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """APPS: competitive-programming problems with test cases and reference solutions."""

    name = "emergence_apps"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Original APPS.tar.gz problem folders, or codeparrot/apps JSONL."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Put {DATA_URL} (APPS.tar.gz or its extracted APPS/ folder), or codeparrot/apps train.jsonl and "
        "test.jsonl, in manual_dir."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Measuring Coding Challenge Competence With APPS (Hendrycks et al., NeurIPS 2021).",
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),
                    "question": tfds.features.Text(),
                    "starter_code": tfds.features.Text(),
                    "solutions": tfds.features.Sequence(tfds.features.Text()),
                    "input_output": tfds.features.Text(),  # the published JSON text, "" when absent
                    "difficulty": tfds.features.Text(),
                    "url": tfds.features.Text(),
                }
            ),
            homepage="https://github.com/hendrycks/apps",
            citation="@article{hendrycksapps2021, title={Measuring Coding Challenge Competence With APPS}, "
            "author={Dan Hendrycks and others}, journal={NeurIPS}, year={2021}}",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = locate_source(
            dl_manager,
            dataset="APPS",
            is_root=lambda folder: _is_problem_folder_root(folder) or _is_jsonl_root(folder),
            archive_names=("APPS.tar.gz",),
            url=DATA_URL,
        )
        if _is_problem_folder_root(root):
            return {split: self._generate_examples(root / split, split) for split in SPLITS}
        return {split: self._generate_examples(root / f"{split}.jsonl", split) for split in SPLITS}

    def _generate_examples(self, source: epath.Path, split: str):
        """`source` is a split's folder of problem folders, or its JSONL file."""
        if source.is_dir():
            yield from self._generate_from_folders(source, split)
        else:
            yield from self._generate_from_jsonl(source, split)

    def _generate_from_folders(self, split_folder: epath.Path, split: str):
        for problem in sorted(child for child in split_folder.iterdir() if child.is_dir()):
            if not (problem / "question.txt").is_file():
                raise UserError(f"{problem}: no question.txt; use the original APPS folders")
            try:
                metadata = json.loads(_read_text(problem / "metadata.json") or "{}")
                solutions = json.loads(_read_text(problem / "solutions.json") or "[]")
            except json.JSONDecodeError as err:
                raise UserError(f"{problem}: unreadable metadata.json or solutions.json ({err})") from err
            key = f"{split}/{problem.name}"
            yield key, {
                "id": key,
                "question": _read_text(problem / "question.txt"),
                "starter_code": _read_text(problem / "starter_code.py"),
                "solutions": solutions,
                "input_output": _read_text(problem / "input_output.json"),
                "difficulty": metadata.get("difficulty", ""),
                "url": metadata.get("url", ""),
            }

    def _generate_from_jsonl(self, path: epath.Path, split: str):
        with path.open(encoding="utf-8") as f:
            for line_number, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    solutions = json.loads(record["solutions"]) if record.get("solutions") else []
                    key = f"{split}/{int(record['problem_id']):04d}"
                    example = {
                        "id": key,
                        "question": record["question"],
                        "starter_code": record.get("starter_code") or "",
                        "solutions": solutions,
                        "input_output": record.get("input_output") or "",
                        "difficulty": record.get("difficulty") or "",
                        "url": record.get("url") or "",
                    }
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                    raise UserError(f"{path}: line {line_number + 1} is not an APPS record ({err}); use the original file") from err
                yield key, example
