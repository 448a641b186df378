"""Scanned layers (stacked parameters, `jax.lax.scan`) and per-layer remat give the unscanned numbers;
checkpoints keep the per-layer layout; LoRA adapts stacked kernels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from emergence_jax.errors import UserError
from emergence_jax.models import GPTNeoXConfig, LlamaConfig, build_model
from emergence_jax.models.sampling import generate
from emergence_jax.models.stacking import stack_layers, unstack_layers
from emergence_jax.train.config import LoraConfig
from emergence_jax.train.lora import add_lora, merge_lora

CONFIGS = {
    "llama_gqa": LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_layers=3, num_heads=4, num_key_value_heads=2),
    "neox": GPTNeoXConfig(vocab_size=96, hidden_size=32, intermediate_size=48, num_layers=3, num_heads=4),
}
IDS = jnp.asarray(np.random.default_rng(0).integers(0, 96, (2, 9)))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_scanned_model_equals_unscanned(name):
    config = CONFIGS[name]
    looped = build_model(config, seed=1)
    scanned = build_model(config, seed=1, scan_layers=True)
    leaf = jax.tree.leaves(nnx.state(scanned.layers, nnx.Param), is_leaf=lambda x: isinstance(x, nnx.Variable))[0]
    assert leaf.shape[0] == config.num_layers and leaf.get_metadata()["out_sharding"][0] == "layers"
    reference = looped(IDS)
    np.testing.assert_allclose(scanned(IDS), reference, atol=1e-5)
    # Stacking a loaded (unscanned) model and unstacking a scanned one keep the numbers.
    np.testing.assert_allclose(stack_layers(build_model(config, seed=1))(IDS), reference, atol=1e-5)
    unstacked = unstack_layers(scanned)
    assert scanned.scan_layers and not unstacked.scan_layers
    np.testing.assert_allclose(unstacked(IDS), scanned(IDS), atol=1e-6)

    # Cached decoding (stacked cache updated in place inside the scan) matches the unscanned model.
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8]]
    np.testing.assert_array_equal(generate(scanned, prompts, max_new_tokens=6), generate(looped, prompts, max_new_tokens=6))


@pytest.mark.parametrize("scan", [False, True])
def test_remat_policies_give_the_same_gradients(scan):
    model = build_model(CONFIGS["llama_gqa"], seed=2, scan_layers=scan)

    def loss(model, remat):
        return jnp.mean(jnp.square(model(IDS, remat=remat)))

    reference = jax.tree.leaves(nnx.grad(loss)(model, "none"))
    for policy in ("full", "dots"):
        grads = jax.tree.leaves(nnx.grad(loss)(model, policy))
        for a, b in zip(reference, grads):
            np.testing.assert_allclose(a, b, atol=1e-7)
    with pytest.raises(UserError, match="remat"):
        model(IDS, remat="sometimes")


def test_scanned_model_saves_per_layer_checkpoints(tmp_path):
    pytest.importorskip("transformers")
    from emergence_jax.checkpoints import load_hf_model, save_hf_model

    scanned = build_model(CONFIGS["neox"], seed=3, scan_layers=True)
    save_hf_model(scanned, tmp_path, progress=False)
    loaded = load_hf_model(tmp_path, progress=False)
    assert not loaded.scan_layers and len(loaded.layers) == 3
    np.testing.assert_allclose(loaded(IDS), scanned(IDS), atol=1e-6)


def test_lora_on_stacked_layers_matches_per_layer_lora():
    config = CONFIGS["llama_gqa"]
    lora = LoraConfig(enabled=True, rank=2, alpha=4.0, targets=("q_proj", "down_proj"))
    looped = add_lora(build_model(config, seed=4), lora, nnx.Rngs(5))
    for path, value in nnx.to_flat_state(nnx.state(looped, nnx.LoRAParam)):
        if path[-1] == "lora_b":  # make the adapters non-zero
            value.set_value(0.1 * jax.random.normal(jax.random.key(len(path)), value.shape))
    adapted = looped(IDS)
    scanned = stack_layers(nnx.merge(*nnx.split(looped)))
    np.testing.assert_allclose(scanned(IDS), adapted, atol=1e-5)
    np.testing.assert_allclose(merge_lora(scanned)(IDS), adapted, atol=1e-5)
    # Adapters added to an already scanned model carry the layer axis.
    fresh = add_lora(build_model(config, seed=4, scan_layers=True), lora, nnx.Rngs(5))
    a = fresh.layers.self_attn.q_proj.lora_a
    assert a.shape == (3, 32, 2) and a.get_metadata()["out_sharding"] == ("layers", "embed", None)
