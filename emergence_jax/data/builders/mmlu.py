"""MMLU (Hendrycks et al. 2021) from the authors' `data.tar` of per-subject CSV files.

Layout of the original archive: `data/{dev,val,test}/{subject}_{split}.csv` for 57 subjects, and
`data/auxiliary_train/*.csv` (about 100k questions from ARC, OBQA, RACE, ... used for finetuning).
Each CSV has no header; a row is `question, A, B, C, D, answer-letter`.
Splits: `dev` (5 per subject, the few-shot examples), `validation`, `test`, `auxiliary_train`.
Examples keep the published order (shuffling disabled): subjects alphabetically, rows in file order.
"""

from __future__ import annotations

import csv
import io

import tensorflow_datasets as tfds
from etils import epath

from emergence_jax.data.builders.source_files import locate_source
from emergence_jax.errors import UserError

DATA_URL = "https://people.eecs.berkeley.edu/~hendrycks/data.tar"
LETTERS = ("A", "B", "C", "D")
SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge",
    "college_biology", "college_chemistry", "college_computer_science", "college_mathematics",
    "college_medicine", "college_physics", "computer_security", "conceptual_physics", "econometrics",
    "electrical_engineering", "elementary_mathematics", "formal_logic", "global_facts",
    "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics",
    "high_school_physics", "high_school_psychology", "high_school_statistics", "high_school_us_history",
    "high_school_world_history", "human_aging", "human_sexuality", "international_law", "jurisprudence",
    "logical_fallacies", "machine_learning", "management", "marketing", "medical_genetics",
    "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition", "philosophy", "prehistory",
    "professional_accounting", "professional_law", "professional_medicine", "professional_psychology",
    "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology", "world_religions",
)  # fmt: skip
# TFDS split name -> (folder in the archive, file-name suffix)
SPLIT_FOLDERS = {"dev": ("dev", "_dev.csv"), "validation": ("val", "_val.csv"), "test": ("test", "_test.csv")}
AUXILIARY_TRAIN = "auxiliary_train"


def _is_mmlu_root(folder: epath.Path) -> bool:
    return (folder / "dev").is_dir() and (folder / "test").is_dir() and any((folder / "dev").glob("*_dev.csv"))


class EmergenceMmlu(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """MMLU: 4-choice questions over 57 subjects."""

    name = "emergence_mmlu"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Original hendrycks data.tar; adds the auxiliary_train split."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"Put {DATA_URL} (data.tar, or its extracted data/ folder) in manual_dir."

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Measuring Massive Multitask Language Understanding (Hendrycks et al., ICLR 2021).",
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),
                    "subject": tfds.features.Text(),
                    "question": tfds.features.Text(),
                    "choices": tfds.features.Sequence(tfds.features.Text(), length=4),
                    "answer": tfds.features.ClassLabel(names=list(LETTERS)),
                }
            ),
            homepage="https://github.com/hendrycks/test",
            citation="@article{hendryckstest2021, title={Measuring Massive Multitask Language Understanding}, "
            "author={Dan Hendrycks and Collin Burns and Steven Basart and Andy Zou and Mantas Mazeika and "
            "Dawn Song and Jacob Steinhardt}, journal={ICLR}, year={2021}}",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = locate_source(
            dl_manager,
            dataset="MMLU",
            is_root=_is_mmlu_root,
            archive_names=("data.tar",),
            url=DATA_URL,
        )
        splits = {}
        for split, (folder, suffix) in SPLIT_FOLDERS.items():
            files = sorted((root / folder).glob(f"*{suffix}"))
            if not files:
                raise UserError(f"{root / folder}: no *{suffix} files; use the original MMLU data.tar")
            splits[split] = self._generate_examples(files, suffix, split)
        auxiliary = sorted((root / AUXILIARY_TRAIN).glob("*.csv")) if (root / AUXILIARY_TRAIN).is_dir() else []
        if auxiliary:
            splits[AUXILIARY_TRAIN] = self._generate_examples(auxiliary, ".csv", AUXILIARY_TRAIN)
        return splits

    def _generate_examples(self, files: list[epath.Path], suffix: str, split: str):
        for path in files:
            subject = path.name[: -len(suffix)]
            if split != AUXILIARY_TRAIN and subject not in SUBJECTS:
                raise UserError(f"{path}: '{subject}' is not one of the 57 MMLU subjects; remove the file")
            text = path.read_bytes().decode("utf-8")
            for row_number, row in enumerate(csv.reader(io.StringIO(text, newline=""))):
                if len(row) != 6 or row[5].strip() not in LETTERS:
                    raise UserError(
                        f"{path}: row {row_number + 1} is not 'question,A,B,C,D,answer-letter'; "
                        "use the original MMLU CSV files"
                    )
                key = f"{split}/{subject}/{row_number}"
                yield key, {
                    "id": key,
                    "subject": subject,
                    "question": row[0],
                    "choices": row[1:5],
                    "answer": row[5].strip(),
                }
