"""Loading onto an 8-device CPU mesh gives the shardings the rules ask for, and the same logits.

Run with XLA_FLAGS=--xla_force_host_platform_device_count=8 (the Makefile's test target does).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from emergence_jax.errors import UserError
from emergence_jax.models import LlamaConfig, build_model
from emergence_jax.sharding import DEFAULT_RULES, logical_to_spec, make_mesh, rules_from_config

pytest.importorskip("transformers")

from emergence_jax.checkpoints import load_hf_model  # noqa: E402
from emergence_jax.checkpoints.testing import tiny_hf_checkpoint  # noqa: E402
from emergence_jax.models.sampling import generate  # noqa: E402


@pytest.fixture(scope="module")
def mesh():
    assert len(jax.devices()) >= 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
    return make_mesh(data=1, fsdp=-1, tensor=2, devices=jax.devices()[:8])


def test_make_mesh_fills_the_rest():
    devices = jax.devices()[:1]
    assert dict(make_mesh(devices=devices).shape) == {"data": 1, "fsdp": 1, "tensor": 1}
    with pytest.raises(UserError, match="at most one"):
        make_mesh(data=-1, fsdp=-1, devices=devices)
    with pytest.raises(UserError, match="do not divide"):
        make_mesh(data=1, fsdp=1, tensor=2, devices=devices)


def test_mesh_sizes(mesh):
    assert dict(mesh.shape) == {"data": 1, "fsdp": 4, "tensor": 2}


def test_logical_to_spec_drops_axes_that_do_not_divide(mesh):
    assert logical_to_spec(("embed", "heads", "head_dim"), (64, 4, 16), mesh) == P("fsdp", "tensor", None)
    assert logical_to_spec(("embed", "kv_heads", "head_dim"), (64, 1, 16), mesh) == P("fsdp", None, None)
    assert logical_to_spec(("batch", "length"), (8, 5), mesh) == P(("data", "fsdp"), None)
    assert logical_to_spec(("batch", "length"), (2, 5), mesh) == P("data", None)
    rules = rules_from_config({"embed": None, "mlp": ["fsdp", "tensor"]})
    assert logical_to_spec(("embed", "mlp"), (64, 96), mesh, rules) == P(None, ("fsdp", "tensor"))


EXPECTED = {
    ("embed_tokens", "embedding"): P("tensor", "fsdp"),
    ("layers", 0, "self_attn", "q_proj", "kernel"): P("fsdp", "tensor", None),
    ("layers", 0, "self_attn", "k_proj", "kernel"): P("fsdp", "tensor", None),
    ("layers", 0, "self_attn", "o_proj", "kernel"): P("tensor", None, "fsdp"),
    ("layers", 1, "mlp", "gate_proj", "kernel"): P("fsdp", "tensor"),
    ("layers", 1, "mlp", "down_proj", "kernel"): P("tensor", "fsdp"),
    ("layers", 1, "input_layernorm", "scale"): P(None),
    ("lm_head", "kernel"): P("fsdp", "tensor"),
}


def _specs(model):
    return {path: v.get_value().sharding.spec for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def test_loaded_model_has_rule_shardings_and_same_logits(tmp_path, mesh):
    tiny_hf_checkpoint(tmp_path, "llama", seed=21, num_key_value_heads=2)
    reference = load_hf_model(tmp_path, progress=False)
    sharded = load_hf_model(tmp_path, mesh=mesh, progress=False)
    specs = _specs(sharded)
    for path, spec in EXPECTED.items():
        assert specs[path] == spec, path
    for path, variable in nnx.to_flat_state(nnx.state(sharded, nnx.Param)):
        names = variable.get_metadata()["out_sharding"]
        assert specs[path] == logical_to_spec(names, variable.shape, mesh, DEFAULT_RULES)
        assert variable.get_value().sharding.mesh.shape == mesh.shape

    ids = jnp.asarray(np.random.default_rng(0).integers(0, 128, size=(8, 9)))
    graphdef, state = nnx.split(sharded)
    with jax.set_mesh(mesh):
        logits = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, ids)
        tokens = generate(sharded, [[5, 6, 7], [9, 10, 11, 12, 13]], max_new_tokens=8)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(reference(ids)), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(tokens), np.asarray(generate(reference, [[5, 6, 7], [9, 10, 11, 12, 13]], max_new_tokens=8)))


def test_build_model_creates_params_in_their_shardings(mesh):
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_layers=2, num_heads=4, num_key_value_heads=2)
    model = build_model(config, mesh=mesh, seed=1)
    specs = _specs(model)
    for path, spec in EXPECTED.items():
        assert specs[path] == spec, path
    plain = build_model(config, seed=1)
    np.testing.assert_allclose(  # same draws; jit and eager differ in the last bit
        np.asarray(model.layers[0].mlp.up_proj.kernel[...]), np.asarray(plain.layers[0].mlp.up_proj.kernel[...]), rtol=1e-5
    )


def test_a_parameter_rule_that_cannot_apply_is_an_error(mesh):
    from emergence_jax.models import abstract_model
    from emergence_jax.sharding import param_shardings

    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_layers=1, num_heads=4, num_key_value_heads=1)
    state = nnx.state(abstract_model(config))
    with pytest.raises(UserError, match=r"layers\.0\.self_attn\.k_proj\.kernel: .*'kv_heads', size 1.*'tensor'.*kv_heads: null"):
        param_shardings(state, mesh)
    relaxed = param_shardings(state, mesh, allow_replication=True)
    assert relaxed["layers"][0]["self_attn"]["k_proj"]["kernel"].get_value().spec == P("fsdp", None, None)
    explicit = param_shardings(state, mesh, rules_from_config({"kv_heads": None}))
    assert explicit["layers"][0]["self_attn"]["k_proj"]["kernel"].get_value().spec == P("fsdp", None, None)
