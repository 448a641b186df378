"""Finetuning configs: YAML + --set overrides, and bad configs failing before any compute, in one line."""

import json

import pytest

import argparse

from emergence_jax.train import command
from emergence_jax.config import load_config
from emergence_jax.errors import UserError
from emergence_jax.models import LlamaConfig
from emergence_jax.train.config import FinetuneConfig

TINY = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4)


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY.to_hf()))
    return folder


@pytest.fixture
def config_file(tmp_path, model_dir):
    path = tmp_path / "finetune.yaml"
    path.write_text(
        f"run_dir: {tmp_path / 'run'}\n"
        f"model: {{path: {model_dir}, pretrain_loss: 2.5}}\n"
        "data: {task: commonsense_qa, data_dir: /nonexistent, num_examples: 10}\n"
        "optim: {batch_size: 8, learning_rate: 1.0e-4}\n"
        "lora: {enabled: true, targets: [q_proj]}\n"
    )
    return path


def test_yaml_and_overrides(config_file):
    config = load_config(FinetuneConfig, config_file, ["optim.learning_rate=3e-4", "lora.targets=[q_proj, v_proj]", "mesh.tensor=2"])
    assert config.optim.learning_rate == 3e-4 and config.optim.batch_size == 8
    assert config.lora.targets == ("q_proj", "v_proj") and config.mesh.tensor == 2
    assert config.data.num_examples == 10 and config.model.pretrain_loss == 2.5


def test_shipped_configs_load():
    for name in ("configs/finetune_full.yaml", "configs/finetune_lora.yaml"):
        assert load_config(FinetuneConfig, name).data.task == "commonsense_qa"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optim.learnin_rate=1e-3"], r"unknown key optim\.learnin_rate"),
        (["optim.batch_size=many"], r"optim\.batch_size must be an integer"),
        (["optim.schedule=step"], r"optim\.schedule must be one of"),
        (["mesh.fsdp=3"], r"mesh: sizes .* do not divide 8 devices"),
        (["optim.batch_size=12"], r"12 is not divisible by the data parallelism 8"),
        (["mesh.fsdp=2", "mesh.tensor=4", "optim.batch_size=5"], r"5 is not divisible by the data parallelism 2"),
        (["lora.targets=[q_proj, qkv]"], r"lora\.targets: 'qkv' matches no linear layer"),
        (["data.task=sudoku"], r"unknown task 'sudoku'"),
        (["optim.accumulation_steps=3"], r"multiple of optim\.accumulation_steps"),
    ],
)
def test_bad_config_fails_with_one_line_before_compute(config_file, overrides, message, tmp_path):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--config", str(config_file)] + [arg for item in overrides for arg in ("--set", item)])
    with pytest.raises(UserError, match=message) as error:
        command.run(args)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists(), "nothing may be written before the config is valid"


def test_missing_config_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(FinetuneConfig, tmp_path / "absent.yaml")
