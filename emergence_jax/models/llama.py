"""LLaMA family (OpenLLaMA V1/V2, LLaMA 2 with grouped-query attention) as a Flax NNX module.

Module and attribute names follow transformers' `LlamaForCausalLM` (`layers.{i}.self_attn.q_proj`,
`mlp.gate_proj`, `input_layernorm`, ...) without its `model.` prefix, so the checkpoint mapping in
`emergence_jax.checkpoints` is a rename table plus transposes.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from emergence_jax.models.base import CausalLM
from emergence_jax.models.config import LlamaConfig
from emergence_jax.models.stacking import stack_modules
from emergence_jax.models.layers import (
    Dense,
    Embed,
    KeyStream,
    LayerCache,
    RMSNorm,
    activation,
    apply_rope,
    dot_product_attention,
    write_cache,
)
from emergence_jax.sharding import constrain


class LlamaAttention(nnx.Module):
    def __init__(self, config: LlamaConfig, *, dtype, param_dtype, keys: KeyStream):
        d, h, kv, hd = config.hidden_size, config.num_heads, config.kv_heads, config.head_dim
        kw = dict(use_bias=config.attention_bias, dtype=dtype, param_dtype=param_dtype, keys=keys)
        self.q_proj = Dense((d,), (h, hd), ("embed", "heads", "head_dim"), **kw)
        self.k_proj = Dense((d,), (kv, hd), ("embed", "kv_heads", "head_dim"), **kw)
        self.v_proj = Dense((d,), (kv, hd), ("embed", "kv_heads", "head_dim"), **kw)
        self.o_proj = Dense((h, hd), (d,), ("heads", "head_dim", "embed"), **kw)

    def __call__(self, x, cos, sin, mask, layer_cache: LayerCache | None, index):
        q = apply_rope(self.q_proj(x), cos, sin)
        k = apply_rope(self.k_proj(x), cos, sin)
        v = self.v_proj(x)
        if layer_cache is not None:
            layer_cache = write_cache(layer_cache, index, k, v)
            k, v = layer_cache.keys_values(q.dtype)
        out = dot_product_attention(q, k, v, mask, causal=layer_cache is None)
        return self.o_proj(out), layer_cache


class LlamaMLP(nnx.Module):
    def __init__(self, config: LlamaConfig, *, dtype, param_dtype, keys: KeyStream):
        d, f = config.hidden_size, config.intermediate_size
        kw = dict(use_bias=config.mlp_bias, dtype=dtype, param_dtype=param_dtype, keys=keys)
        self.gate_proj = Dense((d,), (f,), ("embed", "mlp"), **kw)
        self.up_proj = Dense((d,), (f,), ("embed", "mlp"), **kw)
        self.down_proj = Dense((f,), (d,), ("mlp", "embed"), **kw)
        self.hidden_act = config.hidden_act
        activation(config.hidden_act)  # unsupported names fail here, not at the first call

    def __call__(self, x):
        h = activation(self.hidden_act)(self.gate_proj(x)) * self.up_proj(x)
        return self.down_proj(constrain(h, ("batch", "length", "act_mlp")))


class LlamaDecoderLayer(nnx.Module):
    def __init__(self, config: LlamaConfig, *, dtype, param_dtype, keys: KeyStream):
        kw = dict(dtype=dtype, param_dtype=param_dtype, keys=keys)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype, param_dtype=param_dtype)
        self.self_attn = LlamaAttention(config, **kw)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype, param_dtype=param_dtype)
        self.mlp = LlamaMLP(config, **kw)

    def __call__(self, x, cos, sin, mask, layer_cache, index):
        attn, layer_cache = self.self_attn(self.input_layernorm(x), cos, sin, mask, layer_cache, index)
        x = x + attn
        x = x + self.mlp(self.post_attention_layernorm(x))
        return constrain(x, ("batch", "length", "act_embed")), layer_cache


class Llama(CausalLM):
    """A LLaMA causal language model; the call convention is `CausalLM`'s."""

    def __init__(self, config: LlamaConfig, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs, scan_layers: bool = False):
        self.config = config
        self.dtype = dtype
        keys = KeyStream(rngs.params())
        kw = dict(dtype=dtype, param_dtype=param_dtype, keys=keys)
        self.embed_tokens = Embed(config.vocab_size, config.hidden_size, **kw)
        layers = [LlamaDecoderLayer(config, **kw) for _ in range(config.num_layers)]
        self.scan_layers = scan_layers
        self.layers = stack_modules(layers) if scan_layers else nnx.List(layers)
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype=dtype, param_dtype=param_dtype)
        self.lm_head = (
            None
            if config.tie_word_embeddings
            else Dense((config.hidden_size,), (config.vocab_size,), ("embed", "vocab"), **kw)
        )

    def parts(self):
        return self.embed_tokens, self.norm, self.lm_head
