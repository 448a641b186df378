"""Hugging Face checkpoint folders <-> NNX models, one tensor at a time.

A folder holds `config.json` and either `model.safetensors` or a sharded
`model.safetensors.index.json` with its shard files. Loading builds the model abstractly (no
memory), then reads each tensor with safetensors' `safe_open`, converts it to our layout on the
host, and places it straight onto its target sharding; only one tensor is ever on the host, so a
70B model never sits whole in host memory. Saving is the reverse and writes a folder that
`transformers.AutoModelForCausalLM.from_pretrained` loads.

Name mapping is a rename table: our variable path `layers.3.self_attn.q_proj.kernel` is
transformers' `model.layers.3.self_attn.q_proj.weight` (see `_PREFIX` and `_LEAF`). Dense kernels
are stored `in_shape + out_shape` here and `[prod(out), prod(in)]` in torch, so conversion is a
transpose plus a reshape (this also maps GPT-NeoX's per-head `(q, k, v)` row layout onto our
`[embed, heads, 3, head_dim]` kernel).

Local paths and any `etils.epath` path (e.g. `gs://`) are accepted; remote shard files are copied
to a temporary local file one at a time before reading. A folder with only PyTorch weights
(`pytorch_model.bin`, sharded or not, as Pythia's intermediate checkpoints are) is read with
`torch.load(weights_only=True)`, which refuses anything but tensors; it is never plainly unpickled.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import safetensors
from etils import epath
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file
from tqdm import tqdm

from emergence_jax.errors import UserError
from emergence_jax.models.base import CausalLM
from emergence_jax.models.build import abstract_model
from emergence_jax.models.config import GPTNeoXConfig, LlamaConfig, ModelConfig, config_from_hf
from emergence_jax.models.layers import Dense
from emergence_jax.models.stacking import unstack_layers
from emergence_jax.sharding import DEFAULT_RULES, Rules, param_shardings

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
TORCH_SINGLE_FILE = "pytorch_model.bin"
TORCH_INDEX_FILE = "pytorch_model.bin.index.json"

# Our top-level module -> transformers' prefix, per architecture; the leaf names map as in _LEAF.
_PREFIX: dict[type, dict[str, str]] = {
    LlamaConfig: {"embed_tokens": "model.", "layers": "model.", "norm": "model.", "lm_head": ""},
    GPTNeoXConfig: {"embed_in": "gpt_neox.", "layers": "gpt_neox.", "final_layer_norm": "gpt_neox.", "embed_out": ""},
}
_LEAF = {"kernel": "weight", "bias": "bias", "scale": "weight", "embedding": "weight"}

# Buffers older transformers versions saved that carry no learned weights.
_IGNORED = re.compile(r"(rotary_emb\.inv_freq|attention\.bias|attention\.masked_bias)$")

_FLOAT_DTYPES = {"F16": np.float16, "BF16": ml_dtypes.bfloat16, "F32": np.float32, "F64": np.float64}
_TORCH_DTYPE_NAMES = {np.dtype(np.float32): "float32", np.dtype(np.float16): "float16", np.dtype(ml_dtypes.bfloat16): "bfloat16"}


def hf_name(config: ModelConfig, path: tuple[Any, ...]) -> str:
    """transformers' tensor name for our variable at `path` (e.g. `("layers", 0, "mlp", "up_proj", "kernel")`)."""
    prefix = _PREFIX[type(config)][str(path[0])]
    return prefix + ".".join(str(p) for p in path[:-1]) + "." + _LEAF[str(path[-1])]


def _module_at(model: nnx.Module, path: tuple[Any, ...]) -> Any:
    node: Any = model
    for key in path:
        node = node[key] if isinstance(key, int) else getattr(node, key)
    return node


def hf_layout(model: nnx.Module, path: tuple[Any, ...]) -> int | str | None:
    """How our variable at `path` is laid out in torch.

    An int n for a Dense kernel with n input dimensions (torch stores `[prod(out), prod(in)]`),
    `"flat"` for a bias (torch stores it 1-D), None where the layouts agree (embeddings, norms).
    """
    leaf = path[-1]
    if leaf == "kernel":
        module = _module_at(model, path[:-1])
        if isinstance(module, Dense):
            return module.n_in
    return "flat" if leaf == "bias" else None


def to_hf_layout(value: np.ndarray, layout: int | str | None) -> np.ndarray:
    """Our layout -> torch's (see `hf_layout`)."""
    if layout is None:
        return value
    if layout == "flat":
        return value.reshape(-1)
    return value.reshape(math.prod(value.shape[:layout]), -1).T


def from_hf_layout(value: np.ndarray, layout: int | str | None, shape: tuple[int, ...]) -> np.ndarray:
    """torch's layout -> ours (the inverse of `to_hf_layout`)."""
    return value.T.reshape(shape) if isinstance(layout, int) else value.reshape(shape)


def _hf_shape(shape: tuple[int, ...], layout: int | str | None) -> tuple[int, ...]:
    if layout is None:
        return shape
    if layout == "flat":
        return (math.prod(shape),)
    return (math.prod(shape[layout:]), math.prod(shape[:layout]))


# --------------------------------------------------------------------------------------------
# reading


def read_hf_config(folder: str | os.PathLike) -> ModelConfig:
    """Our model config from `folder/config.json`."""
    root = epath.Path(folder)
    if not root.exists():
        raise UserError(f"{root}: no such checkpoint folder")
    path = root / CONFIG_FILE
    if not path.exists():
        raise UserError(f"{root}: no {CONFIG_FILE}; a Hugging Face checkpoint folder needs one (save_pretrained writes it)")
    from emergence_jax.io import loads_json

    return config_from_hf(loads_json(path.read_text(), source=str(path)), str(path))


def _weight_files(root: epath.Path) -> tuple[dict[str, str], str]:
    """(tensor name -> file name, "safetensors" or "torch"), from an index or the single file."""
    for index_name, single_name, kind in (
        (INDEX_FILE, SINGLE_FILE, "safetensors"),
        (TORCH_INDEX_FILE, TORCH_SINGLE_FILE, "torch"),
    ):
        index = root / index_name
        if index.exists():
            try:
                return dict(json.loads(index.read_text())["weight_map"]), kind
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{index}: not a weights index (needs a 'weight_map' object)") from None
        single = root / single_name
        if single.exists():
            with _local(single) as local, _open_weights(local, kind, single_name) as reader:
                return {name: single_name for name in reader.keys()}, kind
    raise UserError(f"{root}: no {SINGLE_FILE} or {INDEX_FILE} (nor {TORCH_SINGLE_FILE}); not a Hugging Face checkpoint folder")


class _SafetensorsReader:
    def __init__(self, handle):
        self._handle = handle

    def keys(self):
        return self._handle.keys()

    def shape_dtype(self, name: str) -> tuple[tuple[int, ...], str]:
        view = self._handle.get_slice(name)
        return tuple(view.get_shape()), view.get_dtype()

    def get(self, name: str) -> np.ndarray:
        return self._handle.get_tensor(name)


class _TorchReader:
    """A PyTorch state dict read with `torch.load(weights_only=True)`: no arbitrary unpickling."""

    _DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}

    def __init__(self, tensors: dict):
        self._tensors = tensors

    def keys(self):
        return self._tensors.keys()

    def shape_dtype(self, name: str) -> tuple[tuple[int, ...], str]:
        tensor = self._tensors[name]
        dtype = str(tensor.dtype).removeprefix("torch.")
        return tuple(tensor.shape), self._DTYPES.get(dtype, dtype)

    def get(self, name: str) -> np.ndarray:
        import torch

        tensor = self._tensors[name].contiguous()
        if tensor.dtype == torch.bfloat16:
            return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        return tensor.numpy()


@contextlib.contextmanager
def _open_weights(local: str, kind: str, file_name: str) -> Iterator[_SafetensorsReader | _TorchReader]:
    if kind == "safetensors":
        try:
            with safe_open(local, framework="np") as handle:
                yield _SafetensorsReader(handle)
        except safetensors.SafetensorError as err:
            raise UserError(f"{file_name}: not a readable safetensors file ({err})") from None
        return
    try:
        import torch
    except ImportError:
        raise UserError(
            f"{file_name}: PyTorch .bin weights need torch to read (pip install torch), or convert the folder to safetensors"
        ) from None
    try:
        try:
            tensors = torch.load(local, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the legacy (non-zip) format cannot be memory-mapped
            tensors = torch.load(local, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first_line = str(err).strip().splitlines()[0]
        raise UserError(
            f"{file_name}: refused by torch.load(weights_only=True), which loads only tensors ({first_line})"
        ) from None
    if not isinstance(tensors, dict):
        raise UserError(f"{file_name}: holds a {type(tensors).__name__}, not a state dict of tensors")
    yield _TorchReader(tensors)


@contextlib.contextmanager
def _local(path: epath.Path) -> Iterator[str]:
    """A local filename for `path`: itself when local, else a temporary copy removed afterwards."""
    if os.path.exists(os.fspath(path)):
        yield os.fspath(path)
        return
    with tempfile.TemporaryDirectory(prefix="emergence_jax_shard_") as tmp:
        local = os.path.join(tmp, path.name)
        with path.open("rb") as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, length=64 << 20)
        yield local


def _place(value: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """Put a host array on its sharding; each device (on every host) receives only its own slice."""
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def load_hf_model(
    folder: str | os.PathLike,
    *,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    mesh: jax.sharding.Mesh | None = None,
    rules: Rules = DEFAULT_RULES,
    progress: bool = True,
) -> CausalLM:
    """The model stored in a Hugging Face folder, parameters in `param_dtype`, compute in `dtype`.

    With a `mesh`, every tensor goes straight to its `NamedSharding` from `rules`; without one, to
    the default device. Missing, unexpected or misshapen tensors raise one `UserError` naming them.
    """
    root = epath.Path(folder)
    config = read_hf_config(root)
    files, kind = _weight_files(root)
    model = abstract_model(config, dtype=dtype, param_dtype=param_dtype)
    graphdef, state = nnx.split(model)
    shardings = param_shardings(state, mesh, rules)
    flat = dict(nnx.to_flat_state(state))
    flat_shardings = dict(nnx.to_flat_state(shardings))

    wanted = {hf_name(config, path): path for path in flat}
    missing = sorted(set(wanted) - set(files))
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise UserError(f"{root}: tensor {missing[0]!r}{more} missing from the checkpoint (model_type {config.model_type})")
    unexpected = sorted(
        name
        for name in set(files) - set(wanted)
        if not _IGNORED.search(name) and not (config.tie_word_embeddings and name in ("lm_head.weight", "embed_out.weight"))
    )
    if unexpected:
        more = f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""
        raise UserError(
            f"{root}: unexpected tensor {unexpected[0]!r}{more} in the checkpoint; config.json does not describe these weights"
        )

    by_file: dict[str, list[str]] = {}
    for name in wanted:
        by_file.setdefault(files[name], []).append(name)
    bar = tqdm(total=len(wanted), desc=f"loading {root.name}", unit="tensor", disable=not progress)
    for file_name, names in sorted(by_file.items()):
        with _local(root / file_name) as local, _open_weights(local, kind, file_name) as reader:
            for name in sorted(names):
                path = wanted[name]
                variable = flat[path]
                layout = hf_layout(model, path)
                value = _read_tensor(reader, name, file_name, _hf_shape(variable.shape, layout))
                value = from_hf_layout(value, layout, variable.shape).astype(variable.dtype)
                flat[path] = variable.replace(_place(value, flat_shardings[path].get_value()))
                bar.update()
    bar.close()
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def _read_tensor(reader, name: str, file_name: str, expected_shape: tuple[int, ...]) -> np.ndarray:
    shape, dtype = reader.shape_dtype(name)
    if shape != tuple(expected_shape):
        raise UserError(f"{file_name}: tensor {name!r} has shape {list(shape)}, config.json implies {list(expected_shape)}")
    if dtype not in _FLOAT_DTYPES:
        raise UserError(f"{file_name}: tensor {name!r} has dtype {dtype}; model weights must be floating point (F16, BF16, F32)")
    return reader.get(name)


# --------------------------------------------------------------------------------------------
# writing


def _host_value(value: jax.Array) -> np.ndarray:
    """The whole of a (possibly multi-host) array on this host: one tensor at a time, so a host
    never holds more than one full tensor. Every process must call it (it may be a collective)."""
    if value.is_fully_addressable:
        return np.asarray(jax.device_get(value))
    if value.sharding.is_fully_replicated:
        return np.asarray(value.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(value, tiled=True))


def _shard_plan(sizes: list[int], max_shard_bytes: int) -> list[list[int]]:
    """Consecutive tensor indices grouped into files of at most `max_shard_bytes` (a larger
    tensor gets a file of its own)."""
    groups: list[list[int]] = [[]]
    total = 0
    for index, size in enumerate(sizes):
        if groups[-1] and total + size > max_shard_bytes:
            groups.append([])
            total = 0
        groups[-1].append(index)
        total += size
    return groups


def save_hf_model(
    model: CausalLM,
    folder: str | os.PathLike,
    *,
    dtype=None,
    max_shard_bytes: int = 5 << 30,
    progress: bool = True,
) -> None:
    """Write `model` as a Hugging Face folder (`config.json`, safetensors, an index if sharded).

    `dtype` (e.g. `jnp.bfloat16`) is the stored dtype; default the parameters' own. The export
    streams: file names are planned from the shapes, then tensors are fetched one at a time and
    each safetensors file is written as soon as it is full, so the host holds at most one file's
    worth (`max_shard_bytes`). In a multi-host run every process must call this (each tensor is
    gathered collectively); only process 0 writes, to a local folder (a temporary folder beside
    it, renamed into place at the end, so a crash leaves no half-written checkpoint) or a
    `gs://` path (each file uploaded as it is finished, `config.json` last).
    """
    model = unstack_layers(model)  # checkpoints hold per-layer tensors
    config = model.config
    root = epath.Path(folder)
    flat = list(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    stored = [np.dtype(dtype) if dtype is not None else np.dtype(variable.get_value().dtype) for _, variable in flat]
    sizes = [math.prod(variable.shape) * d.itemsize for (_, variable), d in zip(flat, stored)]
    groups = _shard_plan(sizes, max_shard_bytes)
    names = [SINGLE_FILE] if len(groups) == 1 else [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    writer = jax.process_index() == 0
    bar = tqdm(total=len(flat), desc=f"saving {root.name}", unit="tensor", disable=not progress or not writer)
    weight_map: dict[str, str] = {}
    with _Publisher(root, enabled=writer) as publisher:
        for file_name, group in zip(names, groups):
            tensors: dict[str, np.ndarray] = {}
            for index in group:
                path, variable = flat[index]
                value = _host_value(variable.get_value())
                if writer:
                    value = to_hf_layout(value.astype(stored[index], copy=False), hf_layout(model, path))
                    tensors[hf_name(config, path)] = np.ascontiguousarray(value)
                bar.update()
            if writer:
                save_file(tensors, publisher.staged(file_name), metadata={"format": "pt"})
                publisher.publish(file_name)
                weight_map.update({name: file_name for name in tensors})
            del tensors
        bar.close()
        if writer:
            if len(groups) > 1:
                index = {"metadata": {"total_size": sum(sizes)}, "weight_map": dict(sorted(weight_map.items()))}
                publisher.staged(INDEX_FILE).write_text(json.dumps(index, indent=2))
                publisher.publish(INDEX_FILE)
            hf_config = config.to_hf()
            dtype_name = _TORCH_DTYPE_NAMES.get(stored[0] if stored else np.dtype(np.float32), "float32")
            hf_config.update(torch_dtype=dtype_name, dtype=dtype_name)
            publisher.staged(CONFIG_FILE).write_text(json.dumps(hf_config, indent=2, sort_keys=True))
            publisher.publish(CONFIG_FILE)


class _Publisher:
    """Stages files in a local temporary folder and moves each to `root` (local: all renamed in at
    the end, in publish order; remote: uploaded and deleted at once). Does nothing when disabled
    (processes other than 0)."""

    def __init__(self, root: epath.Path, *, enabled: bool):
        self.root = root
        self.enabled = enabled
        self.local = None if str(root).startswith(("gs://", "s3://")) else os.path.abspath(os.fspath(root))
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._published: list[str] = []

    def __enter__(self) -> _Publisher:
        if self.enabled:
            parent = os.path.dirname(self.local) if self.local else None
            if parent:
                os.makedirs(parent, exist_ok=True)
            self._tmp = tempfile.TemporaryDirectory(prefix=".saving_", dir=parent)
        return self

    def staged(self, name: str) -> Path:
        return Path(self._tmp.name) / name

    def publish(self, name: str) -> None:
        if self.local:
            self._published.append(name)
            return
        self.root.mkdir(parents=True, exist_ok=True)
        epath.Path(self.staged(name)).copy(self.root / name, overwrite=True)
        self.staged(name).unlink()

    def __exit__(self, kind, error, traceback) -> None:
        if not self.enabled:
            return
        try:
            if kind is None and self.local:
                os.makedirs(self.local, exist_ok=True)
                for name in self._published:
                    os.replace(self.staged(name), os.path.join(self.local, name))
        finally:
            self._tmp.cleanup()
