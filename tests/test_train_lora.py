"""LoRA: only adapters train, merging reproduces the adapted outputs, bad targets are config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from emergence_jax.errors import UserError
from emergence_jax.models.config import LlamaConfig
from emergence_jax.models.llama import Llama
from emergence_jax.sharding import make_mesh
from emergence_jax.train import step as train_step
from emergence_jax.train.config import LoraConfig, OptimConfig
from emergence_jax.train.lora import add_lora, merge_lora
from emergence_jax.train.optim import build_optimizer

CONFIG = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_key_value_heads=2)


def batch(seed=0, shape=(1, 8, 12)):
    ids = np.random.default_rng(seed).integers(0, CONFIG.vocab_size, shape).astype(np.int32)
    ones = np.ones(shape, np.int32)
    return {"input_ids": ids, "positions": np.cumsum(ones, -1) - 1, "attention_mask": ones, "loss_mask": ones}


def param_dict(state):
    return {"/".join(map(str, path)): np.asarray(value) for path, value in nnx.to_flat_state(state)}


def train_adapters():
    model = Llama(CONFIG, rngs=nnx.Rngs(0))
    base_before = param_dict(nnx.state(model, nnx.Param))
    add_lora(model, LoraConfig(enabled=True, rank=4, alpha=8.0, targets=("q_proj", "mlp/down_proj")), nnx.Rngs(1))
    tx = build_optimizer(OptimConfig(learning_rate=3e-2, warmup_fraction=0.0, weight_decay=0.1), 10)
    mesh = make_mesh(1, 4, 2, devices=jax.devices()[:8])
    training = train_step.setup_training(model, tx, mesh, trainable=nnx.LoRAParam)
    losses = []
    with jax.set_mesh(mesh):
        for _ in range(4):
            training.state, metrics = training.step(training.state, training.frozen, batch())
            losses.append(float(metrics["loss"]))
    return training, base_before, losses


def test_only_adapters_train_and_merging_reproduces_the_adapted_model():
    """One training run checked twice (kept in one test so parallel workers do not repeat it)."""
    training, base_before, losses = train_adapters()
    adapters = param_dict(training.state["params"])
    assert len(adapters) == 2 * 2 * 2  # layers x targets x (A, B)
    assert all(name.rsplit("/", 1)[-1] in ("lora_a", "lora_b") for name in adapters)
    assert all(np.abs(v).max() > 0 for k, v in adapters.items() if k.endswith("lora_b"))
    frozen = {k.replace("/base", ""): v for k, v in param_dict(training.frozen).items()}
    assert frozen.keys() == base_before.keys()
    for name, value in frozen.items():
        np.testing.assert_array_equal(value, base_before[name], err_msg=name)
    assert losses[-1] < losses[0]

    model = training.model()
    ids = jnp.asarray(batch(seed=3)["input_ids"][0])
    adapted = np.asarray(model(ids))
    merge_lora(model)
    merged_params = param_dict(nnx.state(model, nnx.Param))
    assert merged_params.keys() == base_before.keys()
    assert not np.allclose(merged_params["layers/0/self_attn/q_proj/kernel"], base_before["layers/0/self_attn/q_proj/kernel"])
    np.testing.assert_array_equal(merged_params["layers/0/self_attn/k_proj/kernel"], base_before["layers/0/self_attn/k_proj/kernel"])
    np.testing.assert_allclose(np.asarray(model(ids)), adapted, rtol=0, atol=1e-5)


def test_target_matching_nothing_is_a_config_error():
    model = Llama(CONFIG, rngs=nnx.Rngs(0))
    with pytest.raises(UserError, match="lora.targets: 'qkv_proj' matches no linear layer.*q_proj"):
        add_lora(model, LoraConfig(enabled=True, targets=("q_proj", "qkv_proj")), nnx.Rngs(1))
