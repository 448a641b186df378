"""Preemption safety: SIGKILL a finetuning run at random points (also mid-save) and restart it;
the final parameters equal an uninterrupted run's exactly and no checkpoint is left corrupt."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

TRAIN_SCRIPT = """
import sys
from emergence_jax.config import config_from_dict
from emergence_jax.models import LlamaConfig, build_model
from emergence_jax.sharding import make_mesh
from emergence_jax.train.config import FinetuneConfig
from emergence_jax.train.loop import run_finetuning
from emergence_jax.train.synthetic import synthetic_examples

import json
config = config_from_dict(FinetuneConfig, json.loads(sys.argv[2]))
model_config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4)
mesh = make_mesh(1, -1, 1)
model = build_model(model_config, seed=0, mesh=mesh)
examples = synthetic_examples(24, vocab_size=64, seed=0)
outcome = run_finetuning(config, model, examples, mesh=mesh, run_dir=sys.argv[1], progress=False)
sys.exit(143 if outcome.preempted else 0)
"""

CONFIG = {
    "seed": 3,
    "model": {"compute_dtype": "float32"},
    "data": {"epochs": 1, "min_steps": 14},
    "optim": {"learning_rate": 3e-3, "batch_size": 16, "accumulation_steps": 2, "warmup_fraction": 0.2},
    "checkpoint": {"every_steps": 3, "keep": 2},
    "log_every_steps": 1,
}
TOTAL_STEPS = 15  # 24 examples, 16 per step: ceil(14 / 1.5) = 10 epochs = 240 rows = 15 steps


def start(run_dir: Path, config=CONFIG) -> subprocess.Popen:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(
        [sys.executable, "-c", TRAIN_SCRIPT, str(run_dir), json.dumps(config)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def logged_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def saving_now(run_dir: Path, since: float = 0.0) -> bool:
    """Whether a temporary (incomplete) checkpoint directory created after `since` exists."""
    folder = run_dir / "checkpoints"
    try:
        return any("tmp" in entry.name and entry.stat().st_mtime >= since for entry in os.scandir(folder))
    except FileNotFoundError:
        return False


def latest_complete(run_dir: Path) -> int:
    folder = run_dir / "checkpoints"
    return max((int(name) for name in os.listdir(folder) if name.isdigit()), default=0) if folder.exists() else 0


def kill_when(process: subprocess.Popen, condition, timeout=120.0) -> bool:
    """SIGKILL `process` as soon as `condition()` holds; False if it finished first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if condition():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.001)
    process.kill()
    raise AssertionError("training made no progress")


def complete_checkpoints(run_dir: Path) -> dict[int, dict]:
    """Every checkpoint the manager lists, fully restored (raises if any is corrupt)."""
    with ocp.CheckpointManager((run_dir / "checkpoints").absolute(), options=ocp.CheckpointManagerOptions(read_only=True)) as manager:
        return {
            step: manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), progress=ocp.args.JsonRestore()))
            for step in manager.all_steps()
        }


def final_params(run_dir: Path) -> list[np.ndarray]:
    checkpoints = complete_checkpoints(run_dir)
    assert max(checkpoints) == TOTAL_STEPS
    final = checkpoints[TOTAL_STEPS]
    assert final.progress["step"] == TOTAL_STEPS
    return [np.asarray(x) for x in jax.tree.leaves(final.state["params"])]


def test_sigkill_and_restart_reproduces_an_uninterrupted_run(tmp_path):
    reference_dir, interrupted_dir = tmp_path / "reference", tmp_path / "interrupted"
    reference = start(reference_dir)
    first, extra = (int(x) for x in np.random.default_rng(0).integers([1, 1], [4, 3]))
    kills = [  # each condition sees (lines logged by this run, its start time)
        lambda lines, since: lines >= first,  # early, before any checkpoint is complete
        lambda lines, since: saving_now(interrupted_dir, since),  # in the middle of writing a checkpoint
        lambda lines, since: latest_complete(interrupted_dir) > 3 and lines >= extra,  # a few steps after a save
    ]
    for condition in kills:
        before, since = logged_steps(interrupted_dir), time.time()
        process = start(interrupted_dir)
        assert kill_when(process, lambda: condition(logged_steps(interrupted_dir) - before, since)), "finished before the kill"
        for step, checkpoint in complete_checkpoints(interrupted_dir).items() if (interrupted_dir / "checkpoints").exists() else ():
            assert checkpoint.progress["step"] == step
    assert latest_complete(interrupted_dir) > 3, "the last restart must resume from a checkpoint"
    finisher = start(interrupted_dir)
    assert finisher.wait(timeout=300) == 0, finisher.stdout.read()
    assert reference.wait(timeout=300) == 0, reference.stdout.read()

    assert not saving_now(interrupted_dir), "a temporary checkpoint directory was left behind"
    assert len(complete_checkpoints(interrupted_dir)) <= 2  # keep-last-N
    want, got = final_params(reference_dir), final_params(interrupted_dir)
    assert len(want) == len(got) > 0
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    steps = [json.loads(line)["step"] for line in (interrupted_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == TOTAL_STEPS and set(steps) == set(range(1, TOTAL_STEPS + 1))
