"""Segment ids keep packed examples apart: in a packed row each example's logits are its logits alone."""

import jax.numpy as jnp
import numpy as np
import pytest

from emergence_jax.models import GPTNeoXConfig, LlamaConfig, build_model
from emergence_jax.train.batches import BatchPlan, TokenizedExample

CONFIGS = {
    "llama": LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4, num_key_value_heads=2),
    "neox": GPTNeoXConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=2, num_heads=4),
}
FIRST, SECOND = (5, 9, 2, 7, 7, 1), (3, 8, 4, 6, 2)


def packed_batch():
    """One packed row (FIRST then SECOND, then padding) from the finetuning batcher."""
    examples = (TokenizedExample(FIRST[:2], FIRST[2:]), TokenizedExample(SECOND[:3], SECOND[3:]))
    plan = BatchPlan(examples, batch_size=1, accumulation_steps=1, row_length=16, epochs=1, packing=True, seed=0)
    return {key: value[0] for key, value in plan.batch(0).items()}


def test_batcher_numbers_the_segments_of_a_packed_row():
    batch = packed_batch()
    row_ids = batch["input_ids"][0].tolist()
    first = 0 if row_ids[: len(FIRST)] == list(FIRST) else len(SECOND)
    segments = batch["segment_ids"][0]
    assert sorted(set(segments.tolist())) == [0, 1, 2]
    assert (segments[batch["attention_mask"][0] == 0] == 0).all()
    assert len(set(segments[first : first + len(FIRST)].tolist())) == 1


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_packed_example_logits_equal_its_logits_alone(name):
    model = build_model(CONFIGS[name], seed=0)
    batch = packed_batch()
    ids = batch["input_ids"][0].tolist()
    assert ids[: len(FIRST)] == list(FIRST)  # the batcher's order for seed 0: SECOND is packed after FIRST
    start = len(FIRST)
    alone = np.asarray(model(jnp.asarray([SECOND])))[0]
    inputs = {key: jnp.asarray(batch[key]) for key in ("input_ids", "positions", "attention_mask")}
    packed = np.asarray(model(**{"input_ids": inputs.pop("input_ids")}, **inputs, segment_ids=jnp.asarray(batch["segment_ids"])))
    np.testing.assert_allclose(packed[0, start : start + len(SECOND)], alone, atol=1e-5)
    # Without segment ids the second example sees the first: different logits.
    leaky = np.asarray(model(jnp.asarray(batch["input_ids"]), positions=jnp.asarray(batch["positions"]),
                             attention_mask=jnp.asarray(batch["attention_mask"])))
    assert np.abs(leaky[0, start : start + len(SECOND)] - alone).max() > 1e-3
