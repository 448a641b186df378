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


# Full finetuning of these configs' largest models does not fit a TPU v4 chip with today's model code:
# remat wraps the whole loss, so the backward pass holds every layer's gathered (FSDP) weights at once
# (13B in bf16: 24 GiB per chip). Scanned layers with per-layer remat (issue 15) fix it; then re-measure
# with `emergence-jax bench memory --config FILE` and drop the entry. strict: a fix makes these fail.
DOES_NOT_FIT_YET = {"open_llama_v1": "open_llama_13b", "open_llama_v1_mmlu": "open_llama_13b", "llama2_apps": "llama2_7b"}


def _paper_config_cases():
    for path in PAPER_CONFIGS:
        if path.stem in DOES_NOT_FIT_YET:
            mark = pytest.mark.xfail(raises=UserError, strict=True, reason=f"{DOES_NOT_FIT_YET[path.stem]} full finetuning does not fit (whole-loss remat)")
            yield pytest.param(path, marks=mark, id=path.stem)
        else:
            yield pytest.param(path, id=path.stem)


@pytest.mark.parametrize("path", _paper_config_cases())
def test_paper_configs_list_figures_that_fit_their_chips(path):
    config = load_config(SweepConfig, path)
    memory = config.requirements["memory"]
    assert memory["steps"], path
    check_memory_requirements(config, str(path))
    for entry in memory["steps"]:
        assert 0 < entry["train_gib"] <= 0.9 * memory["device_gib"] and 0 < entry["eval_gib"] <= 0.9 * memory["device_gib"]


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
