"""TFDS builders for the task datasets, written as array_record files (no TensorFlow needed).

`prepare_dataset` builds one from a local `manual_dir` of the original files or by download;
`load_split` / `load_examples` read a prepared split back through `builder.as_data_source()`
(ArrayRecord random access, no TensorFlow), as plain Python dicts in published order.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from emergence_jax.data.builders.apps import EmergenceApps
from emergence_jax.data.builders.cola import EmergenceCola
from emergence_jax.data.builders.commonsense_qa import EmergenceCommonsenseQa
from emergence_jax.data.builders.gsm8k import EmergenceGsm8k
from emergence_jax.data.builders.mmlu import EmergenceMmlu
from emergence_jax.errors import UserError

FILE_FORMAT = "array_record"
BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    "mmlu": EmergenceMmlu,
    "gsm8k": EmergenceGsm8k,
    "commonsense_qa": EmergenceCommonsenseQa,
    "cola": EmergenceCola,
    "apps": EmergenceApps,
}


def _builder(dataset: str, data_dir: epath.PathLike | None) -> tfds.core.GeneratorBasedBuilder:
    """`data_dir=None` means TFDS's default ($TFDS_DATA_DIR or ~/tensorflow_datasets)."""
    if dataset not in BUILDERS:
        raise UserError(f"unknown dataset '{dataset}'; choose one of {', '.join(BUILDERS)}")
    return BUILDERS[dataset](data_dir=None if data_dir is None else str(data_dir), file_format=FILE_FORMAT)


def prepare_dataset(dataset: str, *, data_dir: epath.PathLike | None, manual_dir: epath.PathLike | None = None) -> epath.Path:
    """Build `dataset` into `data_dir` (a TFDS data directory) and return the prepared folder.

    The original files come from `manual_dir` when they are there, else from their public URL.
    Preparing twice is a no-op; TFDS writes into a temporary folder and renames it when complete.
    """
    builder = _builder(dataset, data_dir)
    download_config = tfds.download.DownloadConfig(manual_dir=str(manual_dir) if manual_dir else None)
    builder.download_and_prepare(download_config=download_config, file_format=FILE_FORMAT)
    load_split.cache_clear()
    return epath.Path(builder.data_dir)


def _to_python(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, dict):
        return {key: _to_python(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_to_python(item) for item in value]
    if isinstance(value, np.integer):
        return int(value)
    return value


def _data_source(dataset: str, data_dir: str | None, split: str):
    builder = _builder(dataset, data_dir)
    if not builder.is_prepared():
        where = builder.data_dir_root
        raise UserError(
            f"{where}: dataset '{dataset}' is not prepared there; run "
            f"`emergence-jax prepare-data --dataset {dataset} --data-dir {where} [--manual-dir FOLDER]`"
        )
    if split not in builder.info.splits:
        raise UserError(f"dataset '{dataset}' has no split '{split}'; choose one of {', '.join(builder.info.splits)}")
    return builder.as_data_source(split=split)


@functools.lru_cache(maxsize=16)
def load_split(dataset: str, *, data_dir: str | None, split: str) -> tuple[dict[str, Any], ...]:
    """All examples of a prepared split, text as `str`, class labels as `int`, in published order."""
    source = _data_source(dataset, data_dir, split)
    return tuple(_to_python(example) for example in source.__getitems__(range(len(source))))


def split_size(dataset: str, *, data_dir: str | None, split: str) -> int:
    """Number of examples in a prepared split (reads no example)."""
    return len(_data_source(dataset, data_dir, split))


def load_examples(dataset: str, *, data_dir: str | None, split: str, indices: Sequence[int]) -> list[dict[str, Any]]:
    """The examples at `indices` (positions in published order) of a prepared split, read by
    ArrayRecord random access without decoding the rest."""
    source = _data_source(dataset, data_dir, split)
    return [_to_python(example) for example in source.__getitems__([int(i) for i in indices])]
