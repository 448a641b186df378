"""`bench memory`: the per-device bytes it reports agree with XLA's own accounting of the compiled
steps, shrink by the mesh's size when parameters are sharded, and grow with the batch; a sweep
config whose listed figures do not fit its chips, or that leaves a model size out, fails its check."""

import copy
import dataclasses
import math

import jax
import pytest

from emergence_jax.bench.memory import GIB, check_memory_requirements, measure_memory, parse_batch
from emergence_jax.config import load_config
from emergence_jax.errors import UserError
from emergence_jax.models import LlamaConfig
from emergence_jax.sweep.config import SweepConfig

from test_sweep_configs import PAPER_CONFIGS

TINY = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, max_position_embeddings=128)
pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs XLA_FLAGS=--xla_force_host_platform_device_count=8 (as make test sets)")


@pytest.fixture(scope="module")
def sharded():
    return measure_memory(TINY, "fsdp=8", (16, 64), compute_dtype="float32")


def test_reported_inputs_are_what_xla_compiled(sharded):
    train, evaluation = sharded["train"], sharded["eval"]
    # The train step's arguments: params + AdamW moments + batch (+ the 4-byte step counter).
    assert train["xla"]["arguments"] == pytest.approx(train["params"] + train["optimizer"] + train["batch"], rel=0.01)
    assert train["optimizer"] == pytest.approx(2 * train["params"], rel=0.01)  # two moments per weight
    assert train["xla"]["aliased"] > 0.9 * (train["params"] + train["optimizer"])  # the state is donated
    assert evaluation["xla"]["arguments"] == pytest.approx(evaluation["params"] + evaluation["batch"], rel=0.01)
    assert train["peak"] >= train["params"] + train["optimizer"] + train["temporaries"]


def test_sharding_divides_parameters_by_the_mesh_and_batch_grows_temporaries(sharded):
    single = measure_memory(TINY, "fsdp=1", (16, 128), compute_dtype="float32")  # one device, rows twice as long
    # Matrices split 8 ways; the norm vectors (2 * layers + 1 of 64 floats) stay whole on every device.
    norms = (2 * TINY.num_layers + 1) * TINY.hidden_size * 4
    assert sharded["train"]["params"] == pytest.approx((single["train"]["params"] - norms) / 8 + norms, rel=1e-6)
    assert sharded["eval"]["params"] == sharded["train"]["params"]
    assert sharded["train"]["batch"] * 16 == single["train"]["batch"] == 4 * 16 * 128 * 4
    # 16x more tokens per device: activations and logits, hence temporaries, grow several-fold.
    assert single["train"]["temporaries"] > 4 * sharded["train"]["temporaries"]
    assert single["eval"]["temporaries"] > 4 * sharded["eval"]["temporaries"]


def test_bad_batches_and_meshes_are_user_errors():
    with pytest.raises(UserError, match="expected ROWSxTOKENS"):
        parse_batch("8by2048")
    with pytest.raises(UserError, match="do not split"):
        measure_memory(TINY, "fsdp=8", (4, 64))
    with pytest.raises(UserError, match="no -1"):
        measure_memory(TINY, "fsdp=-1", (8, 64))


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_configs_list_figures_that_fit_their_chips(path):
    config = load_config(SweepConfig, path)
    memory = config.requirements["memory"]
    assert memory["steps"], path
    check_memory_requirements(config, str(path))  # also: measured with the recipe's remat, layers, batch and mesh
    for entry in memory["steps"]:
        assert 0 < entry["train_gib"] <= 0.9 * memory["device_gib"] and 0 < entry["eval_gib"] <= 0.9 * memory["device_gib"]


@pytest.mark.slow  # ~30 s of CPU: two more train-step compilations
def test_scanned_layers_with_per_layer_remat_hold_less_than_a_python_loop():
    """With FSDP, remat of a Python loop keeps every layer's gathered weights for the backward pass;
    the scan keeps one layer's at a time (what made 13B fit a v4 chip)."""
    deep = dataclasses.replace(TINY, num_layers=4)
    scanned = measure_memory(deep, "fsdp=8", (8, 8), compute_dtype="float32", remat="full", scan_layers=True)
    looped = measure_memory(deep, "fsdp=8", (8, 8), compute_dtype="float32", remat="full", scan_layers=False)
    assert scanned["scan_layers"] and not looped["scan_layers"] and scanned["remat"] == "full"
    assert scanned["train"]["params"] == looped["train"]["params"]
    assert scanned["train"]["temporaries"] < 0.7 * looped["train"]["temporaries"]


def test_a_model_that_does_not_fit_or_is_not_listed_fails_the_check():
    config = load_config(SweepConfig, [p for p in PAPER_CONFIGS if p.stem == "open_llama_v1_vs_v2"][0])
    requirements = copy.deepcopy(config.requirements)
    requirements["memory"]["device_gib"] = 8  # an 8 GiB GPU instead of a TPU v4 chip
    with pytest.raises(UserError, match=r"open_llama_3b needs .* GiB per chip .* more than 90% of the 8 GiB chips"):
        check_memory_requirements(dataclasses.replace(config, requirements=requirements))
    requirements = copy.deepcopy(config.requirements)
    requirements["memory"]["steps"] = []
    with pytest.raises(UserError, match="lists no figures for open_llama_3b"):
        check_memory_requirements(dataclasses.replace(config, requirements=requirements))
    assert math.isclose(GIB, 1 << 30)


def _open_llama_mmlu():
    return load_config(SweepConfig, [p for p in PAPER_CONFIGS if p.stem == "open_llama_v1_mmlu"][0])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.update(remat="none"), r"requirements\.memory\.remat: the figures were measured with remat none, but .* runs dots"),
        (lambda m: m.update(scan_layers=False), r"scan_layers: the figures were measured with scan_layers False, but .* runs True"),
        (lambda m: m["steps"][0].update(batch="16x512"), r"steps\[0\]\.batch: the figures were measured with batch 16x512, but .* runs 32x512"),
        (lambda m: m["steps"][0].update(mesh="fsdp=8,tensor=2"), r"steps\[0\]: mesh fsdp=8,tensor=2, but on 16 chips .* makes fsdp=16"),
        (lambda m: m["steps"][0].update(mesh="fsdp=64"), r"microbatch of 32 rows does not split over 64 data-parallel chips"),
    ],
)
def test_figures_measured_for_another_train_step_fail_the_check(change, message):
    """The listed figures must be for the step the finetuning recipe runs (configs/finetune_full.yaml
    with the sweep's finetune.set): remat policy, scanned layers, batch, and the mesh it makes."""
    config = _open_llama_mmlu()
    requirements = copy.deepcopy(config.requirements)
    change(requirements["memory"])
    with pytest.raises(UserError, match=message):
        check_memory_requirements(dataclasses.replace(config, requirements=requirements), "cfg")


def test_the_sweep_config_check_runs_the_memory_check(tmp_path):
    """`sweep --dry-run` (validate_sweep) refuses a config whose model would not fit its chips."""
    from emergence_jax.sweep.jobs import validate_sweep

    config = _open_llama_mmlu()
    requirements = copy.deepcopy(config.requirements)
    requirements["memory"]["device_gib"] = 16
    with pytest.raises(UserError, match=r"open_llama_13b needs .* GiB per chip"):
        validate_sweep(dataclasses.replace(config, requirements=requirements), "cfg", check_folders=False)


def test_bench_memory_compiles_what_the_finetuning_recipe_runs():
    """`model.remat` / `model.scan_layers` of configs/finetune_full.yaml (with a sweep's finetune.set)
    are what `bench memory --config` compiles; a policy that does not exist is a config error."""
    from emergence_jax.bench.memory import recipe_train_settings
    from emergence_jax.train.config import FinetuneConfig

    recipe = load_config(FinetuneConfig, "configs/finetune_full.yaml", ["optim.accumulation_steps=8"])
    assert recipe_train_settings(recipe) == {"batch": "32x512", "accumulation_steps": 8, "compute_dtype": "bfloat16", "remat": "dots", "scan_layers": True}
    assert recipe_train_settings(load_config(FinetuneConfig, "configs/finetune_full.yaml", ["model.remat=false"]))["remat"] == "none"
    with pytest.raises(UserError, match=r"model\.remat must be one of 'none', 'full', 'dots', got 'fast'"):
        load_config(FinetuneConfig, "configs/finetune_full.yaml", ["model.remat=fast"])
