"""The forward pass both architectures share: embed, decoder layers, final norm, output projection."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from emergence_jax.models.layers import (
    Dense,
    Embed,
    KVCache,
    attention_mask_and_cache,
    default_positions,
    rope_cos_sin,
)
from emergence_jax.sharding import constrain


class CausalLM(nnx.Module):
    """Base of `Llama` and `GPTNeoX`; subclasses name their parts as transformers does.

    `model(input_ids)` returns float32 logits `[batch, length, vocab]`. `attention_mask` `[batch,
    length]` (1 = real token, 0 = padding) hides padded keys; `positions` `[batch, length]` default to
    `0..length-1` as in transformers. With `cache=` (from `init_cache`) the call appends the tokens to
    the cache and returns `(logits, cache)`, for incremental decoding.
    """

    config: object
    layers: nnx.List

    def parts(self) -> tuple[Embed, nnx.Module, Dense | None]:
        """(token embedding, final norm, untied output projection or None)."""
        raise NotImplementedError

    def __call__(
        self,
        input_ids: jax.Array,
        *,
        attention_mask: jax.Array | None = None,
        positions: jax.Array | None = None,
        cache: KVCache | None = None,
    ):
        embed, final_norm, head = self.parts()
        batch, length = input_ids.shape
        if positions is None:
            positions = default_positions(cache, batch, length)
        mask, cache = attention_mask_and_cache(cache, attention_mask, length, batch)
        cos, sin = rope_cos_sin(positions, self.config.rope_inv_freq())
        x = constrain(embed(input_ids), ("batch", "length", "act_embed"))
        index = None if cache is None else cache.index
        new_layers = []
        for i, layer in enumerate(self.layers):
            x, layer_cache = layer(x, cos, sin, mask, None if cache is None else cache.layers[i], index)
            new_layers.append(layer_cache)
        x = final_norm(x)
        logits = embed.attend(x) if head is None else head(x)
        logits = constrain(logits, ("batch", "length", "act_vocab")).astype(jnp.float32)
        if cache is None:
            return logits
        return logits, KVCache(new_layers, cache.key_mask, cache.index + length)
