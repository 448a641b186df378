"""LoRA: low-rank adapters on named linear layers, trained alone and merged back for export.

`add_lora(model, config, rngs)` replaces every linear sub-module whose name matches a target (the
last path component, or a `/`-joined path suffix such as `self_attn/q_proj`) by a `LoraDense`
that computes `base(x) + (alpha / rank) · (x · A) · B`. `A` starts random and `B` at zero, so the
adapted model starts equal to the base model. Adapter weights are `nnx.LoRAParam`s (sharded like
the base kernel's input and output axes); the train step differentiates only those.
`merge_lora(model)` folds `(alpha / rank) · A · B` into each base kernel and puts the plain layers
back, so the merged model has the original parameter names and exports in Hugging Face format.

A linear layer here is any module with a `kernel` parameter shaped `in_shape + out_shape`, where
`n_in` (default 1) leading axes are contracted with the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from emergence_jax.errors import UserError
from emergence_jax.models.stacking import LAYERS_AXIS
from emergence_jax.train.config import LoraConfig


class LoraDense(nnx.Module):
    """A frozen linear `base` plus a trainable rank-`rank` update scaled by `alpha / rank`."""

    def __init__(self, base: nnx.Module, *, rank: int, alpha: float, rngs: nnx.Rngs):
        kernel = base.kernel
        self.base = base
        self.n_in = int(getattr(base, "n_in", 1))
        self.scale = float(alpha) / rank
        names = tuple(kernel.get_metadata().get("out_sharding") or (None,) * kernel.ndim)
        # A scanned model's kernels carry a leading stacked-layer axis; adapters get one too.
        lead = 1 if names[:1] == (LAYERS_AXIS,) else 0
        stack_shape, stack_names = kernel.shape[:lead], names[:lead]
        in_shape, out_shape = kernel.shape[lead : lead + self.n_in], kernel.shape[lead + self.n_in :]
        in_names, out_names = names[lead : lead + self.n_in], names[lead + self.n_in :]
        fan_in = 1
        for size in in_shape:
            fan_in *= size
        a = jax.random.normal(rngs.params(), (*stack_shape, *in_shape, rank), kernel.dtype) / jnp.sqrt(fan_in).astype(kernel.dtype)
        self.lora_a = nnx.LoRAParam(a, out_sharding=(*stack_names, *in_names, None), eager_sharding=False)
        self.lora_b = nnx.LoRAParam(
            jnp.zeros((*stack_shape, rank, *out_shape), kernel.dtype), out_sharding=(*stack_names, None, *out_names), eager_sharding=False
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.base(x)
        dtype = y.dtype
        low_rank = jnp.tensordot(x.astype(dtype), self.lora_a[...].astype(dtype), axes=self.n_in)
        return y + self.scale * jnp.tensordot(low_rank, self.lora_b[...].astype(dtype), axes=1)

    def merged_kernel(self) -> jax.Array:
        """`kernel + scale · A · B`, in the kernel's dtype."""
        kernel = self.base.kernel[...]
        a, b = self.lora_a[...].astype(jnp.float32), self.lora_b[...].astype(jnp.float32)
        if a.ndim + b.ndim - 2 > kernel.ndim:  # stacked layers: one product per layer
            delta = jax.vmap(lambda a, b: jnp.tensordot(a, b, axes=1))(a, b)
        else:
            delta = jnp.tensordot(a, b, axes=1)
        return (kernel.astype(jnp.float32) + self.scale * delta).astype(kernel.dtype)


def linear_module_paths(model: nnx.Module) -> list[tuple]:
    """Paths of every sub-module with a `kernel` parameter of two or more axes."""
    paths = []
    for path, module in nnx.iter_modules(model):
        kernel = getattr(module, "kernel", None)
        if isinstance(kernel, nnx.Param) and kernel.ndim >= 2 and not isinstance(module, LoraDense):
            paths.append(tuple(path))
    return paths


def _matches(path: tuple, target: str) -> bool:
    parts = [str(p) for p in path]
    wanted = target.strip("/").split("/")
    return len(parts) >= len(wanted) and parts[-len(wanted) :] == wanted


def lora_target_paths(model: nnx.Module, targets: Sequence[str]) -> list[tuple]:
    """The linear layers each target names; a target naming none is a `UserError` listing the names."""
    linear = linear_module_paths(model)
    chosen = []
    for target in targets:
        found = [path for path in linear if _matches(path, target)]
        if not found:
            names = sorted({str(path[-1]) for path in linear})
            raise UserError(f"lora.targets: {target!r} matches no linear layer of the model (names: {', '.join(names)})")
        chosen.extend(path for path in found if path not in chosen)
    return chosen


def add_lora(model: nnx.Module, config: LoraConfig, rngs: nnx.Rngs) -> nnx.Module:
    """Wrap the target layers of `model` in place with `LoraDense` adapters; returns `model`."""
    if config.rank < 1:
        raise UserError(f"lora.rank must be at least 1, got {config.rank}")
    for path in lora_target_paths(model, config.targets):
        parent, key = _parent(model, path)
        _set_child(parent, key, LoraDense(_get_child(parent, key), rank=config.rank, alpha=config.alpha, rngs=rngs))
    return model


def merge_lora(model: nnx.Module) -> nnx.Module:
    """Fold every adapter into its base kernel and restore the plain layers, in place; returns `model`."""
    wrapped = [tuple(path) for path, module in nnx.iter_modules(model) if isinstance(module, LoraDense)]
    for path in wrapped:
        parent, key = _parent(model, path)
        adapter = _get_child(parent, key)
        adapter.base.kernel[...] = adapter.merged_kernel()
        _set_child(parent, key, adapter.base)
    return model


def _parent(model: nnx.Module, path: tuple):
    node = model
    for key in path[:-1]:
        node = _get_child(node, key)
    return node, path[-1]


def _get_child(node, key):
    return node[key] if isinstance(key, int) else getattr(node, key)


def _set_child(node, key, value) -> None:
    if isinstance(key, int):
        node[key] = value
    else:
        setattr(node, key, value)
