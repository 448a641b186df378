"""Scanned decoder layers: stack per-layer modules into one module with a leading layer axis, and back.

A stacked parameter has shape `[num_layers, *shape]` and logical axes `("layers", *names)`; the
`"layers"` axis is replicated by `emergence_jax.sharding.DEFAULT_RULES`. Checkpoint formats keep
the per-layer layout (`layers.3.self_attn.q_proj`), so savers call `unstack_layers` first and a
loaded model is stacked with `stack_layers`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from emergence_jax.errors import UserError

LAYERS_AXIS = "layers"


def _is_variable(x) -> bool:
    return isinstance(x, nnx.Variable)


def _names(variable: nnx.Variable) -> tuple:
    return tuple(variable.get_metadata().get("out_sharding") or (None,) * variable.ndim)


def stack_modules(modules: Sequence[nnx.Module]) -> nnx.Module:
    """One module like `modules[0]` whose variables stack every module's along a new axis 0."""
    if not modules:
        raise UserError("model: num_hidden_layers must be at least 1")
    graphdefs, states = zip(*(nnx.split(m) for m in modules))
    if any(g != graphdefs[0] for g in graphdefs[1:]):
        raise UserError("model: layers differ in structure and cannot be scanned")

    def stack(*variables):
        first = variables[0]
        value = jnp.stack([v.get_value() for v in variables])
        return first.replace(value, out_sharding=(LAYERS_AXIS, *_names(first)))

    return nnx.merge(graphdefs[0], jax.tree.map(stack, *states, is_leaf=_is_variable))


def unstack_module(module: nnx.Module) -> list[nnx.Module]:
    """The per-layer modules of a stacked module (slices share no state with it)."""
    graphdef, state = nnx.split(module)
    leaves = jax.tree.leaves(state, is_leaf=_is_variable)
    count = leaves[0].shape[0]

    def take(i):
        return jax.tree.map(
            lambda v: v.replace(v.get_value()[i], out_sharding=_names(v)[1:]), state, is_leaf=_is_variable
        )

    return [nnx.merge(graphdef, take(i)) for i in range(count)]


def stack_layers(model):
    """`model` with its decoder layers stacked for `jax.lax.scan` (in place; returns `model`)."""
    if not model.scan_layers:
        model.layers = stack_modules(list(model.layers))
        model.scan_layers = True
    return model


def unstack_layers(model):
    """A model sharing `model`'s weights with per-layer modules (the checkpoint layout).

    `model` itself is left as it is; an unscanned model is returned unchanged.
    """
    if not model.scan_layers:
        return model
    copy = nnx.merge(*nnx.split(model))
    copy.layers = nnx.List(unstack_module(copy.layers))
    copy.scan_layers = False
    return copy
