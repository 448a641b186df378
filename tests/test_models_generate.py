"""KV-cache decoding: greedy tokens equal transformers' `generate`; sampling respects top-p."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from emergence_jax.checkpoints import load_hf_model  # noqa: E402
from emergence_jax.checkpoints.testing import tiny_hf_checkpoint  # noqa: E402
from emergence_jax.models import init_cache  # noqa: E402
from emergence_jax.models.sampling import generate, left_pad  # noqa: E402

NEW_TOKENS = 32


def _prompts(seed, lengths=(5, 12, 1, 9)):
    rng = np.random.default_rng(seed)
    return [rng.integers(3, 128, size=n).tolist() for n in lengths]


@pytest.mark.parametrize(
    "arch,overrides",
    [("llama", dict(num_key_value_heads=2)), ("llama", dict(tie_word_embeddings=True)), ("gpt_neox", dict(rotary_pct=0.5))],
)
def test_greedy_tokens_equal_transformers_generate(tmp_path, arch, overrides):
    hf_model = tiny_hf_checkpoint(tmp_path, arch, seed=7, **overrides)
    prompts = _prompts(seed=len(overrides))
    tokens, mask = left_pad(prompts, pad_id=0)
    with torch.no_grad():
        expected = hf_model.generate(
            torch.tensor(tokens, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            max_new_tokens=NEW_TOKENS,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=hf_model.config.eos_token_id,
        )[:, tokens.shape[1] :].numpy()
    model = load_hf_model(tmp_path, progress=False)
    ours = np.asarray(generate(model, prompts, max_new_tokens=NEW_TOKENS, eos_id=hf_model.config.eos_token_id, pad_id=0))
    assert ours.shape == (len(prompts), NEW_TOKENS)
    np.testing.assert_array_equal(ours[:, : expected.shape[1]], expected)
    # A padded array with its mask decodes exactly as the list of prompts does.
    again = generate(model, jnp.asarray(tokens), attention_mask=jnp.asarray(mask), max_new_tokens=NEW_TOKENS,
                     eos_id=hf_model.config.eos_token_id)
    np.testing.assert_array_equal(np.asarray(again), ours)


def test_cached_decoding_equals_full_forward(tmp_path):
    tiny_hf_checkpoint(tmp_path, "llama", seed=2, num_key_value_heads=2)
    model = load_hf_model(tmp_path, progress=False)
    ids = jnp.asarray(np.random.default_rng(0).integers(0, 128, size=(2, 10)))
    full = model(ids)
    cache = init_cache(model.config, 2, 16)
    first, cache = model(ids[:, :6], cache=cache)
    steps = [first]
    for t in range(6, 10):
        logits, cache = model(ids[:, t : t + 1], cache=cache)
        steps.append(logits)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
    # The cache is [batch, kv_heads, slots, head_dim]; a prefill keeping only its last logits
    # (as `generate` does) gives the full call's last position.
    assert cache.layers[0].key.shape == (2, 2, 16, model.config.head_dim)
    last, _ = model(ids[:, :6], cache=init_cache(model.config, 2, 16), logits_to_keep=1)
    np.testing.assert_allclose(last, first[:, -1:], atol=1e-6)


def test_sampling_is_seeded_and_top_p_limits_choices(tmp_path):
    tiny_hf_checkpoint(tmp_path, "gpt_neox", seed=4)
    model = load_hf_model(tmp_path, progress=False)
    prompts = _prompts(seed=1, lengths=(4, 4))
    a = generate(model, prompts, max_new_tokens=6, temperature=1.0, rng=jax.random.key(0))
    b = generate(model, prompts, max_new_tokens=6, temperature=1.0, rng=jax.random.key(0))
    np.testing.assert_array_equal(a, b)
    # top_p close to 0 keeps only the most likely token: sampling equals greedy.
    nucleus = generate(model, prompts, max_new_tokens=6, temperature=1.0, top_p=1e-6, rng=jax.random.key(1))
    np.testing.assert_array_equal(nucleus, generate(model, prompts, max_new_tokens=6))


def test_rows_stop_at_eos(tmp_path):
    tiny_hf_checkpoint(tmp_path, "llama", seed=3)
    model = load_hf_model(tmp_path, progress=False)
    prompts = _prompts(seed=3, lengths=(3, 7))
    free = np.asarray(generate(model, prompts, max_new_tokens=8))
    eos = int(free[0, 2])  # pretend the third token of row 0 ends the sequence
    stopped = np.asarray(generate(model, prompts, max_new_tokens=8, eos_id=eos, pad_id=-1))
    first = list(free[0]).index(eos)
    np.testing.assert_array_equal(stopped[0, : first + 1], free[0, : first + 1])
    assert (stopped[0, first + 1 :] == -1).all()
