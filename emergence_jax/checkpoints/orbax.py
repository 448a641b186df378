"""Orbax save/restore of a model's parameter tree (our layout, any sharding).

A directory holds `config.json` (the model config in Hugging Face form) and `params/` (an Orbax
checkpoint of the `nnx.Param` tree). Restoring builds the target abstractly with the shardings
from the rules, so each process reads only its own shards. Training state (optimizer, step) is
the training code's `CheckpointManager`; this is for parameter trees alone, e.g. a finetuned
model handed to evaluation.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

from emergence_jax.errors import UserError
from emergence_jax.io import write_json
from emergence_jax.models.base import CausalLM
from emergence_jax.models.build import abstract_model
from emergence_jax.models.config import config_from_hf
from emergence_jax.models.stacking import unstack_layers
from emergence_jax.sharding import DEFAULT_RULES, Rules, param_shardings

PARAMS_DIR = "params"
CONFIG_FILE = "config.json"


def _absolute(directory: str | os.PathLike) -> epath.Path:
    path = epath.Path(directory)
    return path if str(path).startswith(("gs://", "s3://")) else epath.Path(os.path.abspath(os.fspath(path)))


def save_params(model: CausalLM, directory: str | os.PathLike) -> None:
    """Write the model's parameters and config under `directory` (created; must not hold params yet)."""
    root = _absolute(directory)
    if (root / PARAMS_DIR).exists():
        raise UserError(f"{root / PARAMS_DIR}: already exists; choose a new directory")
    root.mkdir(parents=True, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(root / PARAMS_DIR, nnx.to_pure_dict(nnx.state(unstack_layers(model), nnx.Param)))
    checkpointer.wait_until_finished()
    if jax.process_index() == 0:
        write_json(root / CONFIG_FILE, model.config.to_hf(), sort_keys=True)


def restore_params(
    directory: str | os.PathLike,
    *,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    mesh: jax.sharding.Mesh | None = None,
    rules: Rules = DEFAULT_RULES,
) -> CausalLM:
    """The model saved by `save_params`, placed on `mesh` by `rules` (or the default device)."""
    root = _absolute(directory)
    config_path = root / CONFIG_FILE
    if not (root / PARAMS_DIR).exists() or not config_path.exists():
        raise UserError(f"{root}: not a parameter checkpoint (needs {CONFIG_FILE} and {PARAMS_DIR}/ from save_params)")
    config = config_from_hf(json.loads(config_path.read_text()), str(config_path))
    graphdef, state = nnx.split(abstract_model(config, dtype=dtype, param_dtype=param_dtype))
    shardings = param_shardings(state, mesh, rules)
    target = jax.tree.map(
        lambda v, s: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s),
        nnx.to_pure_dict(state),
        nnx.to_pure_dict(shardings),
    )
    restored = ocp.StandardCheckpointer().restore(root / PARAMS_DIR, target)
    nnx.replace_by_pure_dict(state, restored)
    return nnx.merge(graphdef, state)
