"""Tiny random Hugging Face checkpoints for tests (needs the `test` extras: torch, transformers).

Tests across the project use these to exercise the real loading code without downloads:
`tiny_hf_checkpoint(tmp_path, "llama")` writes a folder that `load_hf_model` and
`transformers.AutoModelForCausalLM.from_pretrained` both read.
"""

from __future__ import annotations

import os
from typing import Any

TINY_LLAMA: dict[str, Any] = dict(
    vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=4, max_position_embeddings=128, tie_word_embeddings=False,
    bos_token_id=1, eos_token_id=2,
)
TINY_GPT_NEOX: dict[str, Any] = dict(
    vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
    rotary_pct=0.25, max_position_embeddings=128, use_parallel_residual=True, tie_word_embeddings=False,
    bos_token_id=0, eos_token_id=2,
)


def tiny_hf_model(arch: str, seed: int = 0, **overrides: Any):
    """A random transformers `LlamaForCausalLM` / `GPTNeoXForCausalLM` in eval mode, float32.

    Every weight, norms and biases included, gets noise on top of transformers' init, so a
    mapping that drops or swaps a tensor cannot go unnoticed.
    """
    import torch
    import transformers

    if arch == "llama":
        config = transformers.LlamaConfig(**{**TINY_LLAMA, **overrides})
        cls = transformers.LlamaForCausalLM
    elif arch == "gpt_neox":
        config = transformers.GPTNeoXConfig(**{**TINY_GPT_NEOX, **overrides})
        cls = transformers.GPTNeoXForCausalLM
    else:
        raise ValueError(f"arch must be 'llama' or 'gpt_neox', got {arch!r}")
    torch.manual_seed(seed)
    model = cls(config).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    return model


def tiny_hf_checkpoint(folder: str | os.PathLike, arch: str, seed: int = 0, max_shard_size: str | None = None, **overrides: Any):
    """Save `tiny_hf_model(arch, seed, **overrides)` to `folder` (safetensors); returns the torch model."""
    model = tiny_hf_model(arch, seed, **overrides)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(os.fspath(folder), **kwargs)
    return model
