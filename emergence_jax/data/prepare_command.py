"""`emergence-jax prepare-data`: build task datasets as TFDS array_record files.

Run once per dataset where the data should live; evaluation and finetuning then read it with
`--data-dir`. Without network access, put the original files in a folder and pass `--manual-dir`.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, nargs="+", help="dataset(s) to build: mmlu, gsm8k, commonsense_qa, cola, apps")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory to write into and read from later (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument(
        "--manual-dir",
        default=None,
        help="folder with the original files (archive or extracted); use one folder per dataset. Default: download",
    )


def run(args: argparse.Namespace) -> int:
    from emergence_jax.data.builders import prepare_dataset

    for dataset in args.dataset:
        prepared = prepare_dataset(dataset, data_dir=args.data_dir, manual_dir=args.manual_dir)
        print(f"{dataset}: {prepared}")
    return 0
