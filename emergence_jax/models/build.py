"""Constructing models: random init (optionally straight onto a mesh), abstract shapes, sizes."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from emergence_jax.models.base import CausalLM
from emergence_jax.models.config import GPTNeoXConfig, LlamaConfig, ModelConfig
from emergence_jax.models.gpt_neox import GPTNeoX
from emergence_jax.models.llama import Llama
from emergence_jax.sharding import DEFAULT_RULES, Rules, param_shardings

MODEL_CLASSES: dict[type, type[CausalLM]] = {LlamaConfig: Llama, GPTNeoXConfig: GPTNeoX}


def _construct(config: ModelConfig, dtype, param_dtype, seed: int, scan_layers: bool = False) -> CausalLM:
    return MODEL_CLASSES[type(config)](
        config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(seed), scan_layers=scan_layers
    )


def abstract_model(
    config: ModelConfig, *, dtype=jnp.float32, param_dtype=jnp.float32, scan_layers: bool = False
) -> CausalLM:
    """The model with `jax.ShapeDtypeStruct` parameters: shapes, dtypes and logical axes, no memory."""
    return nnx.eval_shape(lambda: _construct(config, dtype, param_dtype, 0, scan_layers))


def build_model(
    config: ModelConfig,
    *,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    seed: int = 0,
    mesh: jax.sharding.Mesh | None = None,
    rules: Rules = DEFAULT_RULES,
    scan_layers: bool = False,
) -> CausalLM:
    """A randomly initialised model (normal(0.02) kernels, unit norms, zero biases).

    With a `mesh`, each parameter is created directly in its sharding from `rules`, so no device
    ever holds the whole model. `scan_layers` stacks the decoder layers for `jax.lax.scan` (the
    same weights as unscanned for the same seed).
    """
    if mesh is None:
        return _construct(config, dtype, param_dtype, seed, scan_layers)
    graphdef, abstract_state = nnx.split(abstract_model(config, dtype=dtype, param_dtype=param_dtype, scan_layers=scan_layers))
    shardings = param_shardings(abstract_state, mesh, rules)

    @functools.partial(jax.jit, out_shardings=shardings)
    def init():
        return nnx.state(_construct(config, dtype, param_dtype, seed, scan_layers))

    return nnx.merge(graphdef, init())


def count_params(config: ModelConfig) -> int:
    """Number of parameters (weights and biases), from shapes alone."""
    state = nnx.state(abstract_model(config), nnx.Param)
    return sum(math.prod(x.shape) for x in jax.tree.leaves(state))
