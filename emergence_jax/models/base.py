"""The forward pass both architectures share: embed, decoder layers, final norm, output projection.

Decoder layers are held one of two ways. Unscanned (the default): `layers` is an `nnx.List` of
per-layer modules, run by a Python loop. Scanned (`scan_layers=True` at construction, or
`emergence_jax.models.stacking.stack_layers(model)`): `layers` is one layer module whose parameters
carry a leading `[num_layers]` axis (logical name `"layers"`), run by `jax.lax.scan`, so the
compiled program holds one layer body whatever the depth. Both give the same numbers.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from emergence_jax.errors import UserError
from emergence_jax.models.layers import (
    Dense,
    Embed,
    KVCache,
    LayerCache,
    attention_mask_and_cache,
    default_positions,
    rope_cos_sin,
)
from emergence_jax.sharding import constrain

REMAT_POLICIES = ("none", "full", "dots")


def _remat(function, remat: str):
    """`function` wrapped in `jax.checkpoint` by policy: "none" (as is), "full" (keep only its
    inputs), "dots" (keep the outputs of weight matmuls, recompute the rest)."""
    if remat == "none":
        return function
    if remat == "full":
        return jax.checkpoint(function)
    if remat == "dots":
        return jax.checkpoint(function, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)
    raise UserError(f"remat: unknown policy {remat!r}; use one of {', '.join(REMAT_POLICIES)}")


class CausalLM(nnx.Module):
    """Base of `Llama` and `GPTNeoX`; subclasses name their parts as transformers does.

    `model(input_ids)` returns float32 logits `[batch, length, vocab]`. `attention_mask` `[batch,
    length]` (1 = real token, 0 = padding) hides padded keys; `positions` `[batch, length]` default to
    `0..length-1` as in transformers; `segment_ids` `[batch, length]` (packed rows) keep each token's
    attention inside its own segment. With `cache=` (from `init_cache`) the call appends the tokens
    to the cache and returns `(logits, cache)`, for incremental decoding. `remat` ("none", "full",
    "dots") rematerialises each decoder layer in the backward pass. `logits_to_keep` > 0 returns
    logits for the last that many positions only, as transformers' argument of that name (a
    prefill that samples from its last position skips most of the output projection).
    """

    config: Any
    layers: Any
    scan_layers: bool = False

    def parts(self) -> tuple[Embed, nnx.Module, Dense | None]:
        """(token embedding, final norm, untied output projection or None)."""
        raise NotImplementedError

    def __call__(
        self,
        input_ids: jax.Array,
        *,
        attention_mask: jax.Array | None = None,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        cache: KVCache | None = None,
        remat: str = "none",
        logits_to_keep: int = 0,
    ):
        embed, final_norm, head = self.parts()
        batch, length = input_ids.shape
        if positions is None:
            positions = default_positions(cache, batch, length)
        mask, cache = attention_mask_and_cache(cache, attention_mask, length, batch, segment_ids)
        cos, sin = rope_cos_sin(positions, self.config.rope_inv_freq())
        x = constrain(embed(input_ids), ("batch", "length", "act_embed"))
        index = None if cache is None else cache.index
        if self.scan_layers:
            x, new_layers = self._scanned(x, cos, sin, mask, cache, index, remat)
        else:
            x, new_layers = self._looped(x, cos, sin, mask, cache, index, remat)
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        x = final_norm(x)
        logits = embed.attend(x) if head is None else head(x)
        logits = constrain(logits, ("batch", "length", "act_vocab")).astype(jnp.float32)
        if cache is None:
            return logits
        return logits, KVCache(new_layers, cache.key_mask, cache.index + length)

    def _looped(self, x, cos, sin, mask, cache, index, remat):
        new_layers = []
        for i, layer in enumerate(self.layers):
            layer_cache = None if cache is None else _layer_of(cache.layers, i)
            if remat == "none":
                x, layer_cache = layer(x, cos, sin, mask, layer_cache, index)
            else:
                graphdef, state = nnx.split(layer)

                def apply(state, x, layer_cache, graphdef=graphdef):
                    return nnx.merge(graphdef, state)(x, cos, sin, mask, layer_cache, index)

                x, layer_cache = _remat(apply, remat)(state, x, layer_cache)
            new_layers.append(layer_cache)
        return x, new_layers

    def _scanned(self, x, cos, sin, mask, cache, index, remat):
        graphdef, state = nnx.split(self.layers)

        def apply(state, x, layer_cache):
            return nnx.merge(graphdef, state)(x, cos, sin, mask, layer_cache, index)

        apply = _remat(apply, remat)
        if cache is None:

            def body(x, state):
                x, _ = apply(state, x, None)
                return x, None

            x, _ = jax.lax.scan(body, x, state)
            return x, None

        stacked = _stacked(cache.layers)
        length = x.shape[1]

        # The stacked cache rides in the carry and each layer writes its slice in place.
        def body(carry, xs):
            x, keys, values = carry
            state, i = xs
            layer_cache = LayerCache(keys[i], values[i])
            x, layer_cache = apply(state, x, layer_cache)
            new_k = jax.lax.dynamic_slice_in_dim(layer_cache.key, index, length, axis=2)
            new_v = jax.lax.dynamic_slice_in_dim(layer_cache.value, index, length, axis=2)
            keys = jax.lax.dynamic_update_slice(keys, new_k[None], (i, 0, 0, index, 0))
            values = jax.lax.dynamic_update_slice(values, new_v[None], (i, 0, 0, index, 0))
            return (x, keys, values), None

        layer_ids = jnp.arange(self.config.num_layers)
        (x, keys, values), _ = jax.lax.scan(body, (x, stacked.key, stacked.value), (state, layer_ids))
        return x, LayerCache(keys, values)


def _layer_of(layers, i: int) -> LayerCache:
    if isinstance(layers, LayerCache):  # a stacked cache handed to an unscanned model
        return LayerCache(layers.key[i], layers.value[i])
    return layers[i]


def _stacked(layers) -> LayerCache:
    if isinstance(layers, LayerCache):
        return layers
    return LayerCache(jnp.stack([c.key for c in layers]), jnp.stack([c.value for c in layers]))
