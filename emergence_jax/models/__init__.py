"""Flax NNX language models that load real pretrained checkpoints exactly as transformers runs them.

Architectures: LLaMA (OpenLLaMA V1/V2, LLaMA 2 incl. grouped-query attention) and GPT-NeoX (Pythia).

API (stable; the training and evaluation code builds on it)
-----------------------------------------------------------
Configs (`emergence_jax.models.config`), frozen dataclasses:
    LlamaConfig, GPTNeoXConfig, RopeScaling, ModelConfig (= their union),
    config_from_hf(dict) -> ModelConfig;  config.to_hf() -> dict (a transformers config.json)

Models: `Llama(config, dtype=, param_dtype=, rngs=)` and `GPTNeoX(...)`, both `CausalLM`:
    model(input_ids[b, t], *, attention_mask=None, positions=None) -> float32 logits [b, t, vocab]
    model(input_ids, *, attention_mask=, positions=, cache=cache) -> (logits, cache)
    model(..., logits_to_keep=n) -> logits of the last n positions only (n = 0: all), as transformers
  `attention_mask` is 1 for real tokens, 0 for padding; `positions` default to 0..t-1 (as in
  transformers; pass `cumsum(mask) - 1` for left-padded rows). `param_dtype` is the storage dtype
  of the weights (float32 by default), `dtype` the compute dtype (e.g. bfloat16 on accelerators);
  norms, softmax and RoPE run in float32, logits come back float32.
  Parameters are `nnx.Param`s whose `out_sharding` metadata holds logical axis names
  (`vocab embed heads kv_heads head_dim qkv mlp norm`), mapped to mesh axes by
  `emergence_jax.sharding`. Variable paths follow transformers without its `model.` /
  `gpt_neox.` prefix, e.g. `layers[3].self_attn.q_proj.kernel` (kernels are `[in..., out...]`).

build_model(config, *, dtype, param_dtype, seed, mesh=None, rules) -> CausalLM
    random init (normal(0.02)), created directly in its shardings when a mesh is given.
abstract_model(config, *, dtype, param_dtype) -> CausalLM with ShapeDtypeStruct params (no memory).
count_params(config) -> int
Presets (`emergence_jax.models.presets`): PRESETS / preset(name) for open_llama_{3b,7b,13b},
  open_llama_{3b,7b}_v2, llama2_{7b,13b,70b}, pythia_{70m,160m,410m,1b,1.4b,2.8b,6.9b,12b};
  PUBLISHED_PARAMS gives each one's published size.
init_cache(config, batch, max_length, dtype) -> KVCache (for incremental decoding)

Generation (`emergence_jax.models.sampling`):
    generate(model, prompts, *, attention_mask=None, max_new_tokens, temperature=0.0, top_p=1.0,
             rng=None, eos_id=None, pad_id=0) -> int32 [batch, max_new_tokens]
  `prompts` is a list of token lists (left-padded for you) or a left-padded array with its mask.
  Greedy when temperature == 0 (equal to transformers' `generate`), else temperature + top-p
  sampling seeded by `rng`. After EOS a row is filled with `pad_id`. One jit per shape.

Checkpoints (`emergence_jax.checkpoints`):
    load_hf_model(folder, *, dtype, param_dtype, mesh=None, rules, progress) -> CausalLM
      (safetensors, single or indexed; PyTorch .bin only via torch.load(weights_only=True))
    save_hf_model(model, folder, *, dtype=None, max_shard_bytes) -> None  (transformers loads it)
    read_hf_config(folder) -> ModelConfig
  `emergence_jax.checkpoints.orbax`: save_params(model, dir), restore_params(dir, *, dtype,
    param_dtype, mesh, rules) -> CausalLM   (Orbax param tree + config.json)
  `emergence_jax.checkpoints.tokenizer`: load_tokenizer(folder) -> Tokenizer with
    encode(text) -> ids (no special tokens), encode_batch, decode(ids), bos_id, eos_id, pad_id
  `emergence_jax.checkpoints.testing`: tiny_hf_checkpoint(folder, "llama" | "gpt_neox", seed,
    **config_overrides) writes a tiny random transformers checkpoint, for tests.

Sharding (`emergence_jax.sharding`): make_mesh(data, fsdp, tensor) (-1 = the rest), DEFAULT_RULES,
param_shardings(state, mesh, rules), logical_to_spec, constrain, use_rules.
"""

from emergence_jax.models.base import CausalLM
from emergence_jax.models.build import abstract_model, build_model, count_params
from emergence_jax.models.config import (
    GPTNeoXConfig,
    LlamaConfig,
    ModelConfig,
    RopeScaling,
    config_from_hf,
)
from emergence_jax.models.gpt_neox import GPTNeoX
from emergence_jax.models.layers import KVCache, init_cache
from emergence_jax.models.llama import Llama

__all__ = [
    "CausalLM",
    "GPTNeoX",
    "GPTNeoXConfig",
    "KVCache",
    "Llama",
    "LlamaConfig",
    "ModelConfig",
    "RopeScaling",
    "abstract_model",
    "build_model",
    "config_from_hf",
    "count_params",
    "init_cache",
]
