"""The sharded train step: 8-device FSDP / tensor-parallel steps equal the 1-device step (fp32)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from emergence_jax.models.config import LlamaConfig
from emergence_jax.models.llama import Llama
from emergence_jax.sharding import make_mesh
from emergence_jax.train import step as train_step
from emergence_jax.train.config import OptimConfig
from emergence_jax.train.optim import build_optimizer

VOCAB = 128


def tiny_llama(seed=0):
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_key_value_heads=2)
    return Llama(config, rngs=nnx.Rngs(seed))


def make_batch(accumulation, micro, length, seed=0):
    rng = np.random.default_rng(seed)
    shape = (accumulation, micro, length)
    ids = rng.integers(0, VOCAB, shape).astype(np.int32)
    return {
        "input_ids": ids,
        "positions": np.broadcast_to(np.arange(length, dtype=np.int32), shape).copy(),
        "attention_mask": (np.arange(length) < length - 3).astype(np.int32) * np.ones(shape, np.int32),
        "loss_mask": ((rng.random(shape) > 0.4) & (np.arange(length) < length - 3)).astype(np.int32),
    }


def run_steps(mesh_shape, batch, steps=1):
    """Loss and the parameters after `steps` AdamW steps on `batch` (weight decay, clipping on)."""
    devices = jax.devices()[: int(np.prod(mesh_shape))]
    mesh = make_mesh(*mesh_shape, devices=devices)
    model = tiny_llama()
    initial = [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]
    tx = build_optimizer(OptimConfig(learning_rate=1e-2, warmup_fraction=0.0, weight_decay=0.1), 10)
    # tensor=4 does not split the 2 KV heads: replicating them is asked for explicitly.
    training = train_step.setup_training(model, tx, mesh, allow_replication=True)
    with jax.set_mesh(mesh):
        for _ in range(steps):
            training.state, metrics = training.step(training.state, training.frozen, batch)
    assert any(len(x.sharding.device_set) == len(devices) for x in jax.tree.leaves(training.state["params"]))
    final = [np.asarray(x) for x in jax.tree.leaves(training.state["params"])]
    assert max(float(np.abs(p - q).max()) for p, q in zip(final, initial)) > 1e-3, "the step must move the weights"
    return float(metrics["loss"]), final


@pytest.fixture(scope="module")
def reference():
    return run_steps((1, 1, 1), make_batch(1, 8, 16))


@pytest.mark.parametrize("mesh_shape", [(1, 8, 1), (2, 1, 4)], ids=["fsdp8", "data2-tensor4"])
def test_sharded_step_matches_single_device(mesh_shape, reference):
    assert len(jax.devices()) >= 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
    ref_loss, ref_params = reference
    loss, params = run_steps(mesh_shape, make_batch(1, 8, 16))
    assert abs(loss - ref_loss) <= 1e-5
    for got, want in zip(params, ref_params):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_gradient_accumulation_equals_one_large_batch(reference):
    ref_loss, ref_params = reference
    loss, params = run_steps((1, 1, 1), {k: v.reshape(2, 4, 16) for k, v in make_batch(1, 8, 16).items()})
    assert abs(loss - ref_loss) <= 1e-5
    for got, want in zip(params, ref_params):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_prompt_tokens_do_not_contribute_to_loss():
    logits = jax.random.normal(jax.random.key(0), (2, 6, VOCAB))
    ids = jnp.asarray(np.random.default_rng(1).integers(0, VOCAB, (2, 6)), jnp.int32)
    mask = jnp.asarray([[0, 0, 0, 1, 1, 0], [0, 1, 1, 1, 1, 1]], jnp.int32)
    loss, count = train_step.target_token_loss(logits, ids, mask)
    logp = jax.nn.log_softmax(logits, axis=-1)
    expected = -sum(float(logp[b, t - 1, ids[b, t]]) for b in range(2) for t in range(1, 6) if mask[b, t])
    assert float(count) == 7
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    changed = logits.at[0, 0:2].set(0.0)  # positions that predict prompt tokens
    assert float(train_step.target_token_loss(changed, ids, mask)[0]) == pytest.approx(float(loss), rel=1e-7)
