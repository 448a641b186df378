"""Sweep configs: the paper configs parse and expand to the job counts they document; config
mistakes are one-line errors before any compute; --dry-run lists the jobs and what is done."""

import argparse
import json
import re
from pathlib import Path

import pytest
import yaml

from emergence_jax.config import load_config
from emergence_jax.errors import UserError
from emergence_jax.sweep import command
from emergence_jax.sweep.config import SweepConfig
from emergence_jax.sweep.jobs import expand_jobs

ROOT = Path(__file__).resolve().parent.parent
PAPER_CONFIGS = sorted((ROOT / "configs" / "paper").glob("*.yaml"))


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_configs_expand_to_their_documented_jobs(path):
    config = load_config(SweepConfig, path)
    documented = re.match(r"(\d+) loss \+ (\d+) few-shot \+ (\d+) finetune", config.requirements["jobs"])
    assert documented, config.requirements["jobs"]
    jobs = expand_jobs(config)
    counts = [sum(job.stage == stage for job in jobs) for stage in ("pretrain_loss", "fewshot", "finetune")]
    assert counts == [int(n) for n in documented.groups()]
    assert len({job.id for job in jobs}) == len(jobs)
    assert {"model_folders", "hardware", "expected_hours"} <= set(config.requirements)
    assert (ROOT / config.finetune.config).is_file()


def _sweep(argv):
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


def _config(tmp_path, model_folder, **changes):
    data = {
        "output_dir": str(tmp_path / "out"),
        "models": [{"name": "m@1", "path": str(model_folder), "pretrain_loss": 3.0}],
        "tasks": [{"name": "mmlu", "shots": [5], "train_examples": [10], "seeds": [0, 1]}],
        "finetune": {"config": str(ROOT / "configs" / "finetune_full.yaml")},
    }
    data.update(changes)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"tasks": [{"name": "mmlu_typo"}]}, "tasks[0].name 'mmlu_typo' is unknown"),
        ({"models": [{"name": "m@1", "path": "/nonexistent"}]}, "models[0].path /nonexistent: no config.json"),
        ({"models": [{"name": "m", "path": "{model}"}, {"name": "m", "path": "{model}"}]}, "appears twice"),
        ({"models": [{"name": "m", "path": "{model}"}]}, "pretraining loss measured"),
        ({"records": "results.parquet"}, "must be a .csv or .jsonl"),
        ({"finetune": {"config": "missing.yaml"}}, "finetune.config missing.yaml: no such file"),
        ({"finetune": {"config": str(ROOT / "configs" / "finetune_full.yaml"), "set": ["optim.bogus=1"]}}, "unknown key optim.bogus"),
        ({"stage": ["fewshot"]}, "unknown key stage"),
        ({"work_dir": "gs://bucket/work"}, "work_dir gs://bucket/work: finetuning runs write checkpoints and logs through the filesystem"),
    ],
)
def test_config_mistakes_are_user_errors(tmp_path, model_folder, changes, message):
    changes = yaml.safe_load(yaml.safe_dump(changes).replace("'{model}'", str(model_folder)))
    with pytest.raises(UserError, match=re.escape(message)):
        _sweep(["--config", _config(tmp_path, model_folder, **changes)])


def test_dry_run_lists_jobs_and_marks_done_ones(tmp_path, model_folder, capsys):
    config = _config(tmp_path, model_folder)
    done = tmp_path / "out" / "done" / "finetune" / "m@1" / "mmlu" / "D10_seed1.json"
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    assert _sweep(["--config", config, "--dry-run", "--set", "stages=[fewshot,finetune]"]) == 0
    listed = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(("to do", "skipped"))]
    assert listed == [
        ["to", "do", "fewshot/m@1/mmlu/5shot"],
        ["to", "do", "finetune/m@1/mmlu/D10_seed0"],
        ["skipped", "finetune/m@1/mmlu/D10_seed1"],
    ]
    assert not (tmp_path / "out" / "results.csv").exists()


def test_work_done_with_other_settings_is_not_taken_for_this_config(tmp_path, model_folder, capsys):
    from emergence_jax.config import load_config as load
    from emergence_jax.sweep.jobs import finetune_recipe, job_settings

    config_path = _config(tmp_path, model_folder)
    config = load(SweepConfig, config_path)
    job = expand_jobs(config)[-1]
    marker = tmp_path / "out" / "done" / f"{job.id}.json"
    marker.parent.mkdir(parents=True)
    marker.write_text(json.dumps({"settings": job_settings(job, config, finetune_recipe(config))}))
    assert _sweep(["--config", config_path, "--dry-run"]) == 0
    assert f"skipped  {job.id}" in capsys.readouterr().out
    with pytest.raises(UserError, match=r"D10_seed1 was done .* with different settings \(finetune\)"):
        _sweep(["--config", config_path, "--dry-run", "--set", "finetune.set=[optim.learning_rate=0.1]"])
    with pytest.raises(UserError, match=r"with different settings \(limit\)"):
        _sweep(["--config", config_path, "--dry-run", "--set", "tasks=[{name: mmlu, shots: [5], train_examples: [10], seeds: [0, 1], limit: 7}]"])
