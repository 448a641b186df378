"""CommonsenseQA (Talmor et al. 2019) from the authors' JSONL files.

Each line: `{"answerKey": "A", "id": ..., "question": {"question_concept": ..., "stem": ...,
"choices": [{"label": "A", "text": ...}, ... 5 choices A-E]}}`.
Splits: `train` (9741) and `validation` (1221, the published "dev" split, the usual evaluation set
because the test labels are hidden), in file order.
"""

from __future__ import annotations

import json

import tensorflow_datasets as tfds
from etils import epath

from emergence_jax.data.builders.source_files import locate_files
from emergence_jax.errors import UserError

BASE_URL = "https://s3.amazonaws.com/commensenseqa/"
FILES = {"train": "train_rand_split.jsonl", "validation": "dev_rand_split.jsonl"}
LETTERS = ("A", "B", "C", "D", "E")


class EmergenceCommonsenseQa(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """CommonsenseQA: 5-choice commonsense questions."""

    name = "emergence_commonsense_qa"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Original rand-split JSONL files."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"Put {' and '.join(FILES.values())} from {BASE_URL} in manual_dir."

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="CommonsenseQA (Talmor et al., NAACL 2019), random split.",
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),
                    "question": tfds.features.Text(),
                    "concept": tfds.features.Text(),
                    "choices": tfds.features.Sequence(tfds.features.Text(), length=5),
                    "answer": tfds.features.ClassLabel(names=list(LETTERS)),
                }
            ),
            homepage="https://www.tau-nlp.sites.tau.ac.il/commonsenseqa",
            citation="@inproceedings{talmor2019commonsenseqa, title={CommonsenseQA: A Question Answering "
            "Challenge Targeting Commonsense Knowledge}, author={Talmor, Alon and Herzig, Jonathan and Lourie, "
            "Nicholas and Berant, Jonathan}, booktitle={NAACL}, year={2019}}",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        paths = locate_files(dl_manager, dataset="CommonsenseQA", urls={name: BASE_URL + name for name in FILES.values()})
        return {split: self._generate_examples(paths[name]) for split, name in FILES.items()}

    def _generate_examples(self, path: epath.Path):
        with path.open(encoding="utf-8") as f:
            for line_number, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    question = record["question"]
                    choices = sorted(question["choices"], key=lambda choice: choice["label"])
                    labels = tuple(choice["label"] for choice in choices)
                    answer = record["answerKey"]
                    example = {
                        "id": record["id"],
                        "question": question["stem"],
                        "concept": question.get("question_concept", ""),
                        "choices": [choice["text"] for choice in choices],
                        "answer": answer,
                    }
                except (json.JSONDecodeError, KeyError, TypeError) as err:
                    raise UserError(f"{path}: line {line_number + 1} is not a CommonsenseQA record ({err}); use the original file") from err
                if labels != LETTERS or answer not in LETTERS:
                    raise UserError(f"{path}: line {line_number + 1} does not have choices A-E and an answerKey among them")
                yield record["id"], example
