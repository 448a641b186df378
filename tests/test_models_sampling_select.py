"""The sampler draws from softmax(logits / T), and its top-p nucleus is the sort-based one, without sorting."""

import jax
import jax.numpy as jnp
import numpy as np

from emergence_jax.models.sampling import _select, nucleus_threshold

LOGITS = jnp.asarray(np.random.default_rng(0).normal(size=(64,)) * 2.0, jnp.float32)


def test_draws_follow_the_softmax():
    draws = 20000
    tokens = np.asarray(_select(jnp.broadcast_to(LOGITS, (draws, 64)), jax.random.key(0), 1.5, 1.0, False, False))
    expected = np.asarray(jax.nn.softmax(LOGITS / 1.5))
    observed = np.bincount(tokens, minlength=64) / draws
    # 4 standard errors per token
    assert np.all(np.abs(observed - expected) <= 4 * np.sqrt(expected * (1 - expected) / draws) + 1e-4)


def test_nucleus_is_the_smallest_top_set_reaching_top_p():
    logits = jnp.asarray(np.random.default_rng(1).normal(size=(16, 500)) * 3.0, jnp.float32)
    probs = jax.nn.softmax(logits, axis=-1)
    for top_p in (0.1, 0.5, 0.9, 0.999):
        tau = nucleus_threshold(probs, top_p)
        kept = np.asarray(jax.lax.bitcast_convert_type(probs, jnp.int32) >= tau[:, None])
        p = np.asarray(probs, np.float64)
        order = np.argsort(-p, axis=-1)
        ranked = np.take_along_axis(p, order, -1)
        expected = np.zeros_like(kept)
        np.put_along_axis(expected, order, np.cumsum(ranked, -1) - ranked < top_p, -1)
        np.testing.assert_array_equal(kept, expected)
    # Draws with top_p = 0.5 land only in that nucleus.
    tokens = np.asarray(_select(jnp.broadcast_to(logits[0], (2000, 500)), jax.random.key(2), 1.0, 0.5, False, True))
    nucleus = jax.lax.bitcast_convert_type(probs[0], jnp.int32) >= nucleus_threshold(probs[:1], 0.5)[0]
    assert set(tokens.tolist()) <= set(np.flatnonzero(np.asarray(nucleus)).tolist())
