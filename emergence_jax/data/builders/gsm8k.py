"""GSM8K (Cobbe et al. 2021) from the authors' JSONL files.

Each line of `train.jsonl` / `test.jsonl` is `{"question": ..., "answer": ...}` where the answer is a
worked solution (with `<<48/2=24>>` calculator annotations) ending in a line `#### N`.
Splits: `train` (7473), `test` (1319), in file order.
"""

from __future__ import annotations

import json

import tensorflow_datasets as tfds
from etils import epath

from emergence_jax.data.builders.source_files import locate_files
from emergence_jax.errors import UserError

BASE_URL = "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/"
FILES = {"train": "train.jsonl", "test": "test.jsonl"}
FINAL_ANSWER_MARK = "####"


class EmergenceGsm8k(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """GSM8K: grade-school math word problems with worked solutions."""

    name = "emergence_gsm8k"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Original openai/grade-school-math JSONL files."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"Put train.jsonl and test.jsonl from {BASE_URL} in manual_dir."

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Grade School Math 8K (Cobbe et al., 2021).",
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),
                    "question": tfds.features.Text(),
                    "solution": tfds.features.Text(),  # the published answer field, `#### N` included
                    "answer": tfds.features.Text(),  # the final answer N, as written after `####`
                }
            ),
            homepage="https://github.com/openai/grade-school-math",
            citation="@article{cobbe2021gsm8k, title={Training Verifiers to Solve Math Word Problems}, "
            "author={Cobbe, Karl and others}, journal={arXiv preprint arXiv:2110.14168}, year={2021}}",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        paths = locate_files(dl_manager, dataset="GSM8K", urls={name: BASE_URL + name for name in FILES.values()})
        return {split: self._generate_examples(paths[name], split) for split, name in FILES.items()}

    def _generate_examples(self, path: epath.Path, split: str):
        with path.open(encoding="utf-8") as f:
            for line_number, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    question, solution = record["question"], record["answer"]
                except (json.JSONDecodeError, KeyError, TypeError) as err:
                    raise UserError(f"{path}: line {line_number + 1} is not a GSM8K record ({err}); use the original file") from err
                if FINAL_ANSWER_MARK not in solution:
                    raise UserError(f"{path}: line {line_number + 1} has no '#### N' final answer; use the original file")
                key = f"{split}/{line_number}"
                yield key, {
                    "id": key,
                    "question": question,
                    "solution": solution,
                    "answer": solution.rsplit(FINAL_ANSWER_MARK, 1)[1].strip(),
                }
