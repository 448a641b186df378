"""Load a checkpoint once for evaluation: model (on a mesh if asked), tokenizer, compiled scorer,
context size; and the `--mesh` / `--param-dtype` options every evaluation command shares."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from emergence_jax.errors import UserError
from emergence_jax.evaluate.scoring import QueryScorer, pure_language_model


@dataclasses.dataclass
class LoadedModel:
    """Everything an evaluation needs from one checkpoint; `mesh` is None on a single device."""

    model: Any
    config: Any
    tokenizer: Any
    scorer: QueryScorer
    max_length: int
    model_id: str
    mesh: Any = None

    @classmethod
    def from_model(cls, model, tokenizer, *, model_id: str, mesh=None) -> LoadedModel:
        """Wrap a model already in memory (e.g. a finetuned, sharded one); nothing is copied."""
        return cls(
            model=model,
            config=model.config,
            tokenizer=tokenizer,
            scorer=QueryScorer(pure_language_model(model), mesh=mesh),
            max_length=int(model.config.max_position_embeddings),
            model_id=model_id,
            mesh=mesh,
        )


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """`--mesh`, `--param-dtype` and `--compute-dtype`, shared by evaluate, pretrain-loss and pass-until."""
    parser.add_argument(
        "--mesh", default=None,
        help="shard the model over a device mesh, e.g. fsdp=8 or fsdp=4,tensor=2 (axes data, fsdp, tensor; -1 = the remaining "
        "devices); batches split over data x fsdp. Default: one device",
    )
    parser.add_argument("--param-dtype", choices=("float32", "bfloat16"), default="float32", help="dtype the weights are held in on the devices")
    parser.add_argument(
        "--distributed", action="store_true",
        help="join a multi-host job first (every host runs the same command; only process 0 writes); see emergence_jax.distributed",
    )
    parser.add_argument("--compute-dtype", choices=("float32", "bfloat16"), default="float32", help="activation dtype")


def mesh_from_arguments(args: argparse.Namespace):
    """The mesh `--mesh` names (`sharding.parse_mesh`), or None when it is not given; joins the
    multi-host job first with `--distributed`. Call it before anything touches a device."""
    from emergence_jax.sharding import parse_mesh

    if getattr(args, "distributed", False):
        from emergence_jax.distributed import initialize

        initialize()
    if args.mesh is None:
        if getattr(args, "distributed", False):
            raise UserError("--distributed needs --mesh (e.g. --mesh fsdp=-1): the model is split over every host's devices")
        return None
    try:
        return parse_mesh(args.mesh)
    except UserError as err:
        message = str(err)
        raise UserError(message if message.startswith("--mesh") else f"--mesh {args.mesh}: {message}; name sizes whose product is the device count, or -1 for one axis") from None


def check_model_folder(path: str | Path) -> Path:
    """The local checkpoint folder for `path` (a folder, or `hf://ORG/NAME@REVISION` fetched into the
    HF cache by `checkpoints.hub.resolve_model_path`), or a `UserError` saying what is missing
    (cheap for a folder: run it before reading data so a typo in `--model` fails first)."""
    from emergence_jax.checkpoints.hub import resolve_model_path

    folder = resolve_model_path(path)
    if not folder.is_dir():
        raise UserError(f"--model {folder}: no such checkpoint folder; pass a folder with config.json and *.safetensors")
    if not (folder / "config.json").is_file():
        raise UserError(f"--model {folder}: config.json not found; pass a Hugging Face checkpoint folder")
    from emergence_jax.checkpoints.tokenizer import check_tokenizer_files
    from emergence_jax.io import read_json
    from emergence_jax.models.config import config_from_hf

    config = config_from_hf(read_json(folder / "config.json", max_bytes=16 << 20, what="model config"), str(folder / "config.json"))
    check_tokenizer_files(folder, config.vocab_size)
    return folder


def default_model_id(path: str | Path) -> str:
    """The checkpoint id rows get by default: `NAME@REVISION` for a Hub spec, else the folder's name."""
    from emergence_jax.checkpoints.hub import is_hub_spec

    if is_hub_spec(path):
        return str(path).removeprefix("hf://").rsplit("/", 1)[-1]
    return Path(path).resolve().name


def load_model_for_evaluation(
    path: str | Path,
    *,
    compute_dtype: str = "float32",
    param_dtype: str = "float32",
    mesh=None,
    progress: bool = True,
) -> LoadedModel:
    """Read `path` (HF `config.json`, safetensors weights, tokenizer files) into a `LoadedModel`.

    With a `mesh`, each tensor is read on the host one at a time and placed straight onto its
    `NamedSharding` (each device receives only its slice), in `param_dtype`; no whole parameter
    tree is ever on one device. `max_length` is the model's context window, in tokens.
    """
    import jax
    import jax.numpy as jnp

    from emergence_jax.checkpoints.hf import load_hf_model
    from emergence_jax.checkpoints.tokenizer import load_tokenizer

    folder = check_model_folder(path)
    model = load_hf_model(
        folder, dtype=getattr(jnp, compute_dtype), param_dtype=getattr(jnp, param_dtype), mesh=mesh,
        progress=progress and jax.process_index() == 0,
    )
    return LoadedModel.from_model(model, load_tokenizer(folder), model_id=default_model_id(path), mesh=mesh)
