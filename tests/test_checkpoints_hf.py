"""Export to Hugging Face format, Orbax round trips, and one clear error per kind of bad checkpoint."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from emergence_jax.checkpoints import load_hf_model, save_hf_model  # noqa: E402
from emergence_jax.checkpoints.orbax import restore_params, save_params  # noqa: E402
from emergence_jax.checkpoints.testing import tiny_hf_checkpoint  # noqa: E402
from emergence_jax.errors import UserError  # noqa: E402

IDS = np.random.default_rng(0).integers(0, 128, size=(2, 7))


def _torch_logits(model):
    with torch.no_grad():
        return model(torch.tensor(IDS)).logits.numpy()


@pytest.mark.parametrize(
    "arch,overrides",
    [
        ("llama", dict(num_key_value_heads=2)),
        ("llama", dict(tie_word_embeddings=True, rope_scaling={"rope_type": "linear", "factor": 2.0})),
        ("gpt_neox", dict(use_parallel_residual=False, rotary_pct=0.5)),
    ],
)
def test_export_reloads_in_transformers_with_same_logits(tmp_path, arch, overrides):
    original = tiny_hf_checkpoint(tmp_path / "in", arch, seed=11, **overrides)
    model = load_hf_model(tmp_path / "in", progress=False)
    save_hf_model(model, tmp_path / "out", progress=False)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert type(reloaded) is type(original)
    np.testing.assert_allclose(_torch_logits(reloaded), _torch_logits(original), atol=1e-5)
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(IDS))), _torch_logits(original), atol=1e-4)


def test_export_in_shards_and_bfloat16(tmp_path):
    tiny_hf_checkpoint(tmp_path / "in", "llama", seed=12)
    model = load_hf_model(tmp_path / "in", progress=False)
    save_hf_model(model, tmp_path / "out", dtype=jnp.bfloat16, max_shard_bytes=20_000, progress=False)
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert json.loads((tmp_path / "out" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", dtype=torch.float32).eval()
    ours = np.asarray(model(jnp.asarray(IDS)))
    np.testing.assert_allclose(_torch_logits(reloaded), ours, atol=0.05)  # bf16 storage rounding
    again = load_hf_model(tmp_path / "out", progress=False)
    assert again.layers[0].mlp.up_proj.kernel[...].dtype == jnp.float32


def test_sharded_export_streams_file_by_file_and_equals_the_single_device_export(tmp_path, monkeypatch):
    import jax

    from emergence_jax.checkpoints import hf
    from emergence_jax.sharding import parse_mesh

    if jax.device_count() < 8:
        pytest.skip("needs 8 (fake) devices")
    tiny_hf_checkpoint(tmp_path / "in", "llama", seed=14)
    single = load_hf_model(tmp_path / "in", progress=False)
    sharded = load_hf_model(tmp_path / "in", mesh=parse_mesh("fsdp=4,tensor=2"), progress=False)
    written = []
    real_save_file = hf.save_file

    def recording_save_file(tensors, filename, metadata=None):
        written.append(sum(v.nbytes for v in tensors.values()))
        return real_save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(hf, "save_file", recording_save_file)
    save_hf_model(sharded, tmp_path / "sharded", max_shard_bytes=40_000, progress=False)
    largest_tensor = max(v.nbytes for v in load_file(str(tmp_path / "in" / "model.safetensors")).values())
    assert len(written) > 2 and max(written) <= max(40_000, largest_tensor)  # one file in memory at a time
    save_hf_model(single, tmp_path / "single", max_shard_bytes=40_000, progress=False)
    names = sorted(p.name for p in (tmp_path / "single").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "sharded").iterdir()) and not any(n.startswith(".") for n in names)
    for name in names:
        assert (tmp_path / "single" / name).read_bytes() == (tmp_path / "sharded" / name).read_bytes(), name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".saving_")]


def test_orbax_round_trip(tmp_path):
    tiny_hf_checkpoint(tmp_path / "in", "gpt_neox", seed=13)
    model = load_hf_model(tmp_path / "in", progress=False)
    save_params(model, tmp_path / "orbax")
    restored = restore_params(tmp_path / "orbax")
    np.testing.assert_array_equal(np.asarray(restored(jnp.asarray(IDS))), np.asarray(model(jnp.asarray(IDS))))
    with pytest.raises(UserError, match="already exists"):
        save_params(model, tmp_path / "orbax")


# ---- errors: one line naming the tensor or field ------------------------------------------


@pytest.fixture
def llama_folder(tmp_path):
    tiny_hf_checkpoint(tmp_path, "llama", seed=14)
    return tmp_path


def _rewrite(folder, edit):
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def test_missing_tensor_is_named(llama_folder):
    _rewrite(llama_folder, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(UserError, match=r"'model\.layers\.1\.mlp\.up_proj\.weight' missing"):
        load_hf_model(llama_folder, progress=False)


def test_unexpected_tensor_is_named(llama_folder):
    _rewrite(llama_folder, lambda t: t.update({"model.layers.9.extra.weight": np.zeros(3, np.float32)}))
    with pytest.raises(UserError, match=r"unexpected tensor 'model\.layers\.9\.extra\.weight'"):
        load_hf_model(llama_folder, progress=False)


def test_stale_rotary_buffers_are_ignored(llama_folder):
    _rewrite(llama_folder, lambda t: t.update({"model.layers.0.self_attn.rotary_emb.inv_freq": np.zeros(8, np.float32)}))
    load_hf_model(llama_folder, progress=False)


def test_wrong_shape_is_named(llama_folder):
    _rewrite(llama_folder, lambda t: t.update({"model.norm.weight": np.ones(63, np.float32)}))
    with pytest.raises(UserError, match=r"'model\.norm\.weight' has shape \[63\], config\.json implies \[64\]"):
        load_hf_model(llama_folder, progress=False)


def test_integer_tensor_is_a_dtype_error(llama_folder):
    _rewrite(llama_folder, lambda t: t.update({"model.norm.weight": np.ones(64, np.int32)}))
    with pytest.raises(UserError, match=r"'model\.norm\.weight' has dtype I32"):
        load_hf_model(llama_folder, progress=False)


def test_unsupported_model_type_is_named(llama_folder):
    config = json.loads((llama_folder / "config.json").read_text())
    (llama_folder / "config.json").write_text(json.dumps({**config, "model_type": "mamba"}))
    with pytest.raises(UserError, match=r"model_type 'mamba' is not supported"):
        load_hf_model(llama_folder, progress=False)


def test_missing_config_field_is_named(llama_folder):
    config = json.loads((llama_folder / "config.json").read_text())
    del config["hidden_size"]
    (llama_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"required field 'hidden_size' is missing"):
        load_hf_model(llama_folder, progress=False)


def test_unsupported_rope_type_is_named(llama_folder):
    config = json.loads((llama_folder / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0}
    (llama_folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"rope type 'yarn' is not supported"):
        load_hf_model(llama_folder, progress=False)


def test_folder_without_config(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        load_hf_model(tmp_path, progress=False)
    with pytest.raises(UserError, match="no such checkpoint folder"):
        load_hf_model(tmp_path / "absent", progress=False)


def test_pytorch_bin_is_read_with_weights_only(tmp_path):
    hf_model = tiny_hf_checkpoint(tmp_path, "gpt_neox", seed=15)
    # The same tensors under the same on-disk names, as an older save_pretrained wrote them.
    tensors = {name: torch.from_numpy(value).to(torch.bfloat16 if "mlp" in name else torch.float32)
               for name, value in load_file(tmp_path / "model.safetensors").items()}
    (tmp_path / "model.safetensors").unlink()
    torch.save(tensors, tmp_path / "pytorch_model.bin")
    model = load_hf_model(tmp_path, progress=False)
    with torch.no_grad():
        for name, param in hf_model.named_parameters():
            if "mlp" in name:
                param.copy_(param.to(torch.bfloat16).float())
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(IDS))), _torch_logits(hf_model), atol=1e-4)


class _RunsCode:
    """Unpickling this calls open(path, "w"): the file appearing would mean code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pytorch_bin_with_code_is_refused_without_running_it(llama_folder):
    (llama_folder / "model.safetensors").unlink()
    marker = llama_folder / "code_ran"
    torch.save({"model.norm.weight": _RunsCode(marker)}, llama_folder / "pytorch_model.bin")
    with pytest.raises(UserError, match=r"refused by torch\.load\(weights_only=True\)"):
        load_hf_model(llama_folder, progress=False)
    assert not marker.exists()


def test_folder_without_weights(llama_folder):
    (llama_folder / "model.safetensors").unlink()
    with pytest.raises(UserError, match="no model.safetensors"):
        load_hf_model(llama_folder, progress=False)
