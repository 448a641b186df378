"""GPT-NeoX (the Pythia suite) as a Flax NNX module.

Names follow transformers' `GPTNeoXForCausalLM` (`layers.{i}.attention.query_key_value`,
`mlp.dense_h_to_4h`, `final_layer_norm`, `embed_out`) without its `gpt_neox.` prefix. The fused QKV
kernel is kept as `[embed, heads, 3, head_dim]`: transformers' `query_key_value` rows are laid out per
head as `(q, k, v)`, so this is a reshape and transpose of its weight, not a split.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from emergence_jax.models.base import CausalLM
from emergence_jax.models.config import GPTNeoXConfig
from emergence_jax.models.stacking import stack_modules
from emergence_jax.models.layers import (
    Dense,
    Embed,
    KeyStream,
    LayerCache,
    LayerNorm,
    activation,
    apply_rope,
    dot_product_attention,
    write_cache,
)
from emergence_jax.sharding import constrain


class GPTNeoXAttention(nnx.Module):
    def __init__(self, config: GPTNeoXConfig, *, dtype, param_dtype, keys: KeyStream):
        d, h, hd = config.hidden_size, config.num_heads, config.head_dim
        kw = dict(use_bias=config.attention_bias, dtype=dtype, param_dtype=param_dtype, keys=keys)
        self.query_key_value = Dense((d,), (h, 3, hd), ("embed", "heads", "qkv", "head_dim"), **kw)
        self.dense = Dense((h, hd), (d,), ("heads", "head_dim", "embed"), **kw)

    def __call__(self, x, cos, sin, mask, layer_cache: LayerCache | None, index):
        qkv = self.query_key_value(x)
        q = apply_rope(qkv[:, :, :, 0], cos, sin)
        k = apply_rope(qkv[:, :, :, 1], cos, sin)
        v = qkv[:, :, :, 2]
        if layer_cache is not None:
            layer_cache = write_cache(layer_cache, index, k, v)
            k, v = layer_cache.keys_values(q.dtype)
        return self.dense(dot_product_attention(q, k, v, mask, causal=layer_cache is None)), layer_cache


class GPTNeoXMLP(nnx.Module):
    def __init__(self, config: GPTNeoXConfig, *, dtype, param_dtype, keys: KeyStream):
        d, f = config.hidden_size, config.intermediate_size
        kw = dict(use_bias=True, dtype=dtype, param_dtype=param_dtype, keys=keys)
        self.dense_h_to_4h = Dense((d,), (f,), ("embed", "mlp"), **kw)
        self.dense_4h_to_h = Dense((f,), (d,), ("mlp", "embed"), **kw)
        self.hidden_act = config.hidden_act
        activation(config.hidden_act)  # unsupported names fail here, not at the first call

    def __call__(self, x):
        h = activation(self.hidden_act)(self.dense_h_to_4h(x))
        return self.dense_4h_to_h(constrain(h, ("batch", "length", "act_mlp")))


class GPTNeoXLayer(nnx.Module):
    def __init__(self, config: GPTNeoXConfig, *, dtype, param_dtype, keys: KeyStream):
        kw = dict(dtype=dtype, param_dtype=param_dtype, keys=keys)
        self.use_parallel_residual = config.use_parallel_residual
        self.input_layernorm = LayerNorm(config.hidden_size, config.layer_norm_eps, dtype=dtype, param_dtype=param_dtype)
        self.post_attention_layernorm = LayerNorm(config.hidden_size, config.layer_norm_eps, dtype=dtype, param_dtype=param_dtype)
        self.attention = GPTNeoXAttention(config, **kw)
        self.mlp = GPTNeoXMLP(config, **kw)

    def __call__(self, x, cos, sin, mask, layer_cache, index):
        attn, layer_cache = self.attention(self.input_layernorm(x), cos, sin, mask, layer_cache, index)
        if self.use_parallel_residual:
            x = x + attn + self.mlp(self.post_attention_layernorm(x))
        else:
            x = x + attn
            x = x + self.mlp(self.post_attention_layernorm(x))
        return constrain(x, ("batch", "length", "act_embed")), layer_cache


class GPTNeoX(CausalLM):
    """A GPT-NeoX causal language model; the call convention is `CausalLM`'s."""

    def __init__(self, config: GPTNeoXConfig, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs, scan_layers: bool = False):
        self.config = config
        self.dtype = dtype
        keys = KeyStream(rngs.params())
        kw = dict(dtype=dtype, param_dtype=param_dtype, keys=keys)
        self.embed_in = Embed(config.vocab_size, config.hidden_size, **kw)
        layers = [GPTNeoXLayer(config, **kw) for _ in range(config.num_layers)]
        self.scan_layers = scan_layers
        self.layers = stack_modules(layers) if scan_layers else nnx.List(layers)
        self.final_layer_norm = LayerNorm(config.hidden_size, config.layer_norm_eps, dtype=dtype, param_dtype=param_dtype)
        self.embed_out = (
            None
            if config.tie_word_embeddings
            else Dense((config.hidden_size,), (config.vocab_size,), ("embed", "vocab"), **kw)
        )

    def parts(self):
        return self.embed_in, self.final_layer_norm, self.embed_out
