"""CoLA (Warstadt et al. 2019) from the GLUE `CoLA.zip` (or the authors' `cola_public_1.1.zip`).

Both archives hold header-less TSV files with rows `source \t label \t author-mark \t sentence`
(label 1 = acceptable, 0 = unacceptable): GLUE's `CoLA/train.tsv` and `CoLA/dev.tsv`, or the
authors' `cola_public/raw/in_domain_train.tsv` and `in_domain_dev.tsv` (the same sentences).
Splits: `train` (8551) and `validation` (the in-domain dev set, 527), in file order.
"""

from __future__ import annotations

import tensorflow_datasets as tfds
from etils import epath

from emergence_jax.data.builders.source_files import locate_source
from emergence_jax.errors import UserError

DATA_URL = "https://dl.fbaipublicfiles.com/glue/data/CoLA.zip"
# Two published namings of the same files: (train file, validation file).
FILE_NAMES = (("train.tsv", "dev.tsv"), ("in_domain_train.tsv", "in_domain_dev.tsv"))
LABEL_NAMES = ("unacceptable", "acceptable")


def _file_names(folder: epath.Path) -> tuple[str, str] | None:
    for names in FILE_NAMES:
        if all((folder / name).is_file() for name in names):
            return names
    return None


class EmergenceCola(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """CoLA: is this English sentence grammatically acceptable?"""

    name = "emergence_cola"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "GLUE CoLA.zip (train, in-domain dev)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"Put {DATA_URL} (CoLA.zip or its extracted CoLA/ folder) in manual_dir."

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="The Corpus of Linguistic Acceptability (Warstadt et al., TACL 2019).",
            features=tfds.features.FeaturesDict(
                {
                    "id": tfds.features.Text(),
                    "source": tfds.features.Text(),
                    "sentence": tfds.features.Text(),
                    "label": tfds.features.ClassLabel(names=list(LABEL_NAMES)),
                }
            ),
            homepage="https://nyu-mll.github.io/CoLA/",
            citation="@article{warstadt2019neural, title={Neural Network Acceptability Judgments}, author="
            "{Warstadt, Alex and Singh, Amanpreet and Bowman, Samuel R}, journal={TACL}, year={2019}}",
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = locate_source(
            dl_manager,
            dataset="CoLA",
            is_root=lambda folder: _file_names(folder) is not None,
            archive_names=("CoLA.zip", "cola_public_1.1.zip"),
            url=DATA_URL,
        )
        train_name, validation_name = _file_names(root)
        return {
            "train": self._generate_examples(root / train_name, "train"),
            "validation": self._generate_examples(root / validation_name, "validation"),
        }

    def _generate_examples(self, path: epath.Path, split: str):
        with path.open(encoding="utf-8") as f:
            for line_number, line in enumerate(f):
                line = line.rstrip("\n")
                if not line:
                    continue
                fields = line.split("\t", 3)
                if len(fields) != 4 or fields[1] not in ("0", "1"):
                    raise UserError(f"{path}: line {line_number + 1} is not 'source\\tlabel\\tmark\\tsentence'; use the original CoLA file")
                key = f"{split}/{line_number}"
                yield key, {"id": key, "source": fields[0], "sentence": fields[3], "label": int(fields[1])}
