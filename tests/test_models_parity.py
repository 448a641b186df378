"""Our models load transformers checkpoints and give the same float32 logits (max abs diff <= 1e-4)."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from emergence_jax.checkpoints import load_hf_model  # noqa: E402
from emergence_jax.checkpoints.testing import tiny_hf_checkpoint  # noqa: E402

TOL = 1e-4

CASES = {
    "llama_mha_untied": ("llama", dict(num_key_value_heads=4, tie_word_embeddings=False)),
    "llama_gqa_untied": ("llama", dict(num_key_value_heads=2, tie_word_embeddings=False)),
    "llama_mha_tied": ("llama", dict(num_key_value_heads=4, tie_word_embeddings=True)),
    "llama_gqa_tied_mqa": ("llama", dict(num_key_value_heads=1, tie_word_embeddings=True)),
    "llama_rope_linear": ("llama", dict(num_key_value_heads=2, rope_theta=500.0, rope_scaling={"rope_type": "linear", "factor": 4.0})),
    "llama_rope_llama3": (
        "llama",
        dict(
            num_key_value_heads=2,
            rope_scaling={
                "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
        ),
    ),
    "llama_bias": ("llama", dict(attention_bias=True, mlp_bias=True)),
    "neox_parallel": ("gpt_neox", dict(use_parallel_residual=True, rotary_pct=0.25)),
    "neox_sequential": ("gpt_neox", dict(use_parallel_residual=False, rotary_pct=0.5)),
    "neox_full_rotary_tied": ("gpt_neox", dict(rotary_pct=1.0, tie_word_embeddings=True)),
}


def _inputs(seed=0, batch=3, length=11, vocab=128):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, size=(batch, length))
    mask = np.ones((batch, length), np.int64)
    mask[1, :4] = 0  # left padding
    mask[2, :1] = 0
    return ids, mask


def _reference_logits(model, ids, mask):
    with torch.no_grad():
        return model(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits.numpy()


def _max_diff(ours, ref, mask):
    valid = mask.astype(bool)
    return float(np.abs(np.asarray(ours) - ref)[valid].max())


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers(tmp_path, case):
    arch, overrides = CASES[case]
    hf_model = tiny_hf_checkpoint(tmp_path, arch, seed=len(case), **overrides)
    ids, mask = _inputs()
    model = load_hf_model(tmp_path, progress=False)
    logits = model(jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    assert logits.dtype == jnp.float32
    assert _max_diff(logits, _reference_logits(hf_model, ids, mask), mask) <= TOL


@pytest.mark.parametrize("arch", ["llama", "gpt_neox"])
def test_sharded_index_checkpoint_loads_the_same(tmp_path, arch):
    hf_model = tiny_hf_checkpoint(tmp_path, arch, seed=3, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    ids, mask = _inputs(seed=1)
    logits = load_hf_model(tmp_path, progress=False)(jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    assert _max_diff(logits, _reference_logits(hf_model, ids, mask), mask) <= TOL


def test_compute_dtype_is_separate_from_param_dtype(tmp_path):
    hf_model = tiny_hf_checkpoint(tmp_path, "llama", seed=5)
    model = load_hf_model(tmp_path, dtype=jnp.bfloat16, param_dtype=jnp.float32, progress=False)
    assert model.layers[0].self_attn.q_proj.kernel[...].dtype == jnp.float32
    ids, mask = _inputs(seed=2)
    logits = model(jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    assert logits.dtype == jnp.float32
    # bf16 compute is close to, but not the same as, float32.
    diff = _max_diff(logits, _reference_logits(hf_model, ids, mask), mask)
    assert 0 < diff < 0.1


@pytest.mark.parametrize("arch", ["llama", "gpt_neox"])
def test_scanned_layers_match_transformers(tmp_path, arch):
    from emergence_jax.models.stacking import stack_layers

    hf_model = tiny_hf_checkpoint(tmp_path, arch, seed=7, **({"num_key_value_heads": 2} if arch == "llama" else {}))
    ids, mask = _inputs(seed=4)
    model = stack_layers(load_hf_model(tmp_path, progress=False))
    assert model.scan_layers
    logits = model(jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    assert _max_diff(logits, _reference_logits(hf_model, ids, mask), mask) <= TOL


@pytest.mark.parametrize("arch", ["llama", "gpt_neox"])
def test_long_rows_match_transformers_through_causal_blocks(tmp_path, arch):
    """Rows long enough for causal block skipping (3 uneven query blocks) keep HF parity."""
    from emergence_jax.models.layers import causal_blocks

    assert causal_blocks(200) == [(0, 67), (67, 134), (134, 200)]
    extra = {"num_key_value_heads": 2} if arch == "llama" else {}
    hf_model = tiny_hf_checkpoint(tmp_path, arch, seed=9, max_position_embeddings=256, **extra)
    ids, mask = _inputs(seed=6, length=200)
    mask[1, :150] = 0  # padding reaching into the last block
    logits = load_hf_model(tmp_path, progress=False)(jnp.asarray(ids), attention_mask=jnp.asarray(mask))
    assert _max_diff(logits, _reference_logits(hf_model, ids, mask), mask) <= TOL
