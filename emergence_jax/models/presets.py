"""Named configs of the model families the method runs on, with their published sizes.

`PRESETS[name]` is the architecture of a released checkpoint; loading that checkpoint's own
`config.json` gives the same config. `PUBLISHED_PARAMS[name]` is the total parameter count its
authors give (Pythia's model card lists exact totals; LLaMA's papers give billions to one
decimal, so those are checked to that precision).
"""

from __future__ import annotations

from emergence_jax.errors import UserError
from emergence_jax.models.config import GPTNeoXConfig, LlamaConfig, ModelConfig


def _open_llama(hidden: int, intermediate: int, layers: int, heads: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=32000, hidden_size=hidden, intermediate_size=intermediate, num_layers=layers, num_heads=heads,
        max_position_embeddings=2048, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )


def _llama2(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=32000, hidden_size=hidden, intermediate_size=intermediate, num_layers=layers, num_heads=heads,
        num_key_value_heads=kv_heads, max_position_embeddings=4096, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
    )


def _pythia(hidden: int, layers: int, heads: int, vocab: int = 50304) -> GPTNeoXConfig:
    return GPTNeoXConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=4 * hidden, num_layers=layers, num_heads=heads,
        rotary_pct=0.25, max_position_embeddings=2048, layer_norm_eps=1e-5, use_parallel_residual=True,
        bos_token_id=0, eos_token_id=0,
    )


PRESETS: dict[str, ModelConfig] = {
    # OpenLLaMA V1 (RedPajama) and V2 (Falcon RefinedWeb + StarCoder + RedPajama parts): same shapes.
    "open_llama_3b": _open_llama(3200, 8640, 26, 32),
    "open_llama_7b": _open_llama(4096, 11008, 32, 32),
    "open_llama_13b": _open_llama(5120, 13824, 40, 40),
    "open_llama_3b_v2": _open_llama(3200, 8640, 26, 32),
    "open_llama_7b_v2": _open_llama(4096, 11008, 32, 32),
    # LLaMA 2; 70B uses grouped-query attention with 8 key/value heads.
    "llama2_7b": _llama2(4096, 11008, 32, 32, 32),
    "llama2_13b": _llama2(5120, 13824, 40, 40, 40),
    "llama2_70b": _llama2(8192, 28672, 80, 64, 8),
    # Pythia (and Pythia-deduped, same shapes).
    "pythia_70m": _pythia(512, 6, 8),
    "pythia_160m": _pythia(768, 12, 12),
    "pythia_410m": _pythia(1024, 24, 16),
    "pythia_1b": _pythia(2048, 16, 8),
    "pythia_1.4b": _pythia(2048, 24, 16),
    "pythia_2.8b": _pythia(2560, 32, 32),
    "pythia_6.9b": _pythia(4096, 32, 32, vocab=50432),
    "pythia_12b": _pythia(5120, 36, 40, vocab=50688),
}

# name -> (published total parameters, how many significant digits were published).
PUBLISHED_PARAMS: dict[str, tuple[float, float]] = {
    "open_llama_3b": (3.4e9, 0.05e9),  # OpenLLaMA README: "3B"; its checkpoint has 3.43B
    "open_llama_7b": (6.7e9, 0.05e9),  # LLaMA paper, Table 2
    "open_llama_13b": (13.0e9, 0.05e9),
    "open_llama_3b_v2": (3.4e9, 0.05e9),
    "open_llama_7b_v2": (6.7e9, 0.05e9),
    "llama2_7b": (6.7e9, 0.05e9),
    "llama2_13b": (13.0e9, 0.05e9),
    "llama2_70b": (69.0e9, 0.05e9),
    "pythia_70m": (70_426_624, 0),  # Pythia model card, "total params"
    "pythia_160m": (162_322_944, 0),
    "pythia_410m": (405_334_016, 0),
    "pythia_1b": (1_011_781_632, 0),
    "pythia_1.4b": (1_414_647_808, 0),
    "pythia_2.8b": (2_775_208_960, 0),
    "pythia_6.9b": (6_857_302_016, 0),
    "pythia_12b": (11_846_072_320, 0),
}


def preset(name: str) -> ModelConfig:
    """The config named `name`; a UserError lists the known names otherwise."""
    if name not in PRESETS:
        raise UserError(f"model preset {name!r} is unknown (known: {', '.join(PRESETS)})")
    return PRESETS[name]
