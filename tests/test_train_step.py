"""The sharded train step: 8-device FSDP / tensor-parallel steps equal the 1-device step (fp32)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType

from emergence_jax.train import step as train_step
from emergence_jax.train.config import OptimConfig
from emergence_jax.train.optim import build_optimizer

VOCAB, HIDDEN = 64, 32
RULES = (("vocab", "tensor"), ("embed", "fsdp"), ("mlp", "tensor"))


class TinyLM(nnx.Module):
    """A causal (prefix-mean) language model with logical-axis sharding metadata on every matrix."""

    def __init__(self, rngs):
        init = nnx.initializers.normal(0.5)
        self.embed = nnx.Embed(VOCAB, HIDDEN, rngs=rngs, embedding_init=nnx.with_partitioning(init, ("vocab", "embed")))
        self.up = nnx.Linear(HIDDEN, 4 * HIDDEN, rngs=rngs, kernel_init=nnx.with_partitioning(init, ("embed", "mlp")))
        self.down = nnx.Linear(4 * HIDDEN, HIDDEN, rngs=rngs, kernel_init=nnx.with_partitioning(init, ("mlp", "embed")))
        self.norm = nnx.RMSNorm(HIDDEN, rngs=rngs)
        self.head = nnx.Linear(HIDDEN, VOCAB, use_bias=False, rngs=rngs, kernel_init=nnx.with_partitioning(init, ("embed", "vocab")))

    def __call__(self, input_ids, *, positions=None, attention_mask=None):
        x = self.embed(input_ids)
        x = jnp.cumsum(x, axis=1) / jnp.arange(1, input_ids.shape[1] + 1)[None, :, None]
        x = x + self.down(jax.nn.gelu(self.up(x)))
        return self.head(self.norm(x)).astype(jnp.float32)


def make_batch(accumulation, micro, length, seed=0):
    rng = np.random.default_rng(seed)
    shape = (accumulation, micro, length)
    ids = rng.integers(0, VOCAB, shape).astype(np.int32)
    return {
        "input_ids": ids,
        "positions": np.broadcast_to(np.arange(length, dtype=np.int32), shape).copy(),
        "attention_mask": np.ones(shape, np.int32),
        "loss_mask": (rng.random(shape) > 0.4).astype(np.int32),
    }


def run_steps(mesh_shape, batch, steps=2):
    """Loss of the last step and the parameters after `steps` AdamW steps on `batch`."""
    devices = jax.devices()[: int(np.prod(mesh_shape))]
    mesh = jax.make_mesh(mesh_shape, ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3, devices=devices)
    with nnx.use_eager_sharding(False):
        model = TinyLM(nnx.Rngs(0))
    graphdef, params, frozen = nnx.split(model, nnx.Param, ...)
    initial = [np.asarray(x) for x in jax.tree.leaves(params)]
    with nnx.logical_axis_rules(RULES):
        params_sharding = nnx.get_named_sharding(params, mesh)
        frozen_sharding = nnx.get_named_sharding(frozen, mesh)
    tx = build_optimizer(OptimConfig(learning_rate=1e-2, warmup_fraction=0.0, weight_decay=0.1), 10)
    shardings = train_step.train_state_shardings(params_sharding, params, tx, mesh)
    state = train_step.init_train_state(params, tx, shardings)
    step = train_step.make_train_step(graphdef, tx, mesh=mesh, state_shardings=shardings, frozen_shardings=frozen_sharding)
    with jax.set_mesh(mesh):
        for _ in range(steps):
            state, metrics = step(state, frozen, batch)
    leaf = jax.tree.leaves(state["params"])[0]
    assert len(leaf.sharding.device_set) == len(devices)
    final = [np.asarray(x) for x in jax.tree.leaves(state["params"])]
    assert max(float(np.abs(p - q).max()) for p, q in zip(final, initial)) > 1e-3, "the step must move the weights"
    return float(metrics["loss"]), final


@pytest.fixture(scope="module")
def reference():
    return run_steps((1, 1, 1), make_batch(1, 8, 16))


@pytest.mark.parametrize("mesh_shape", [(1, 8, 1), (2, 1, 4), (2, 2, 2)], ids=["fsdp8", "data2-tensor4", "2x2x2"])
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
