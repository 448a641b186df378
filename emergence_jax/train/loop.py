"""The finetuning loop: batches -> sharded steps -> metrics and preemption-safe checkpoints.

`run_finetuning` is restartable: it resumes from the newest complete checkpoint in
`run_dir/checkpoints` (same config), and a run restarted any number of times ends with exactly the
parameters of an uninterrupted one, because the batch of each step and the computation are pure
functions of the step. On SIGTERM it saves and returns with `preempted=True` (the command then
exits 143 so a scheduler restarts it).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

from emergence_jax import sharding
from emergence_jax.errors import UserError
from emergence_jax.train.batches import BatchPlan, TokenizedExample, plan_batches
from emergence_jax.train.checkpointing import TrainCheckpointer
from emergence_jax.train.config import FinetuneConfig
from emergence_jax.train.lora import add_lora
from emergence_jax.train.metrics_log import MetricsLog
from emergence_jax.train.optim import build_optimizer, learning_rate_schedule
from emergence_jax.train.step import Training, data_parallel_size, setup_training


@dataclasses.dataclass
class FinetuneOutcome:
    """The trained state (call `.training.model()` for the model), how far it got, and why it stopped."""

    training: Training
    plan: BatchPlan
    steps_done: int
    preempted: bool
    last_metrics: dict[str, float]


def make_batch_plan(config: FinetuneConfig, examples: Sequence[TokenizedExample], mesh, pad_id: int = 0) -> BatchPlan:
    return plan_batches(
        examples,
        config.data,
        batch_size=config.optim.batch_size,
        accumulation_steps=config.optim.accumulation_steps,
        data_parallel=data_parallel_size(mesh),
        seed=config.seed,
        pad_id=pad_id,
    )


def run_finetuning(
    config: FinetuneConfig,
    model: nnx.Module,
    examples: Sequence[TokenizedExample],
    *,
    mesh: jax.sharding.Mesh,
    run_dir: str | Path,
    pad_id: int = 0,
    rules: sharding.Rules = sharding.DEFAULT_RULES,
    progress: bool = True,
    on_step: Callable[[int, Training], None] | None = None,
) -> FinetuneOutcome:
    """Finetune `model` (modified in place by LoRA wrapping when enabled) on `examples`.

    `on_step(steps_done, training)`, when given, runs after every step (e.g. to keep parameter
    snapshots at chosen steps; it must not step `training` itself)."""
    run_dir = Path(run_dir)
    plan = make_batch_plan(config, examples, mesh, pad_id)
    trainable = nnx.Param
    if config.lora.enabled:
        add_lora(model, config.lora, nnx.Rngs(config.seed))
        trainable = nnx.LoRAParam
    tx = build_optimizer(config.optim, plan.total_steps)
    schedule = learning_rate_schedule(config.optim, plan.total_steps)
    training = setup_training(
        model, tx, mesh, trainable=trainable, rules=rules, learning_rate=schedule, remat=config.model.remat
    )
    checkpointer = TrainCheckpointer(run_dir / "checkpoints", every_steps=config.checkpoint.every_steps, keep=config.checkpoint.keep)
    start = _resume(checkpointer, training, plan, config)
    log = MetricsLog(run_dir, enabled=jax.process_index() == 0)
    bar = tqdm(total=plan.total_steps, initial=start, desc="finetune", unit="step", disable=not progress or jax.process_index() != 0)
    last: dict[str, float] = {}
    preempted = False
    done = logged = start
    try:
        with jax.set_mesh(mesh):
            timer = time.perf_counter()
            for step in range(start, plan.total_steps):
                batch = _device_batch(plan.batch(step), training.step.batch_sharding)
                training.state, metrics = training.step(training.state, training.frozen, batch)
                done = step + 1
                if on_step is not None:
                    on_step(done, training)
                if done % max(config.log_every_steps, 1) == 0 or done == plan.total_steps:
                    last = {k: float(v) for k, v in jax.device_get(metrics).items()}
                    elapsed = time.perf_counter() - timer
                    last["tokens_per_second"] = plan.tokens_per_step * (done - logged) / max(elapsed, 1e-9)
                    last["epoch"] = done * plan.batch_size / plan.rows_per_epoch
                    log.write(done, last)
                    bar.set_postfix(loss=f"{last['loss']:.4f}")
                    bar.update(done - logged)
                    logged, timer = done, time.perf_counter()
                if done < plan.total_steps:
                    preempted = checkpointer.preempted(done)
                    if preempted or checkpointer.due(done):
                        checkpointer.save(done, training.state, _progress(done, plan, config))
                    if preempted:
                        break
            if not preempted and checkpointer.latest_step() != plan.total_steps:
                checkpointer.save(plan.total_steps, training.state, _progress(plan.total_steps, plan, config))
    finally:
        bar.close()
        log.close()
        checkpointer.close()
    return FinetuneOutcome(training, plan, done, preempted, last)


def _progress(step: int, plan: BatchPlan, config: FinetuneConfig) -> dict:
    return {
        "step": step,
        "rows_consumed": step * plan.batch_size,
        "total_steps": plan.total_steps,
        "num_examples": len(plan.examples),
        "seed": config.seed,
    }


def _resume(checkpointer: TrainCheckpointer, training: Training, plan: BatchPlan, config: FinetuneConfig) -> int:
    """Load the newest complete checkpoint into `training`; returns the step to continue from."""
    if checkpointer.latest_step() is None:
        return 0
    try:
        restored = checkpointer.restore_latest(training.state)
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"{checkpointer.manager.directory}: checkpoint does not match this model/config ({str(err).splitlines()[0][:120]}); "
            "use a new run_dir"
        ) from None
    state, progress = restored
    expected = _progress(progress["step"], plan, config)
    if progress != expected:
        raise UserError(
            f"{checkpointer.manager.directory}: checkpoint was written by a different run "
            f"({json.dumps(progress)} vs this config's {json.dumps(expected)}); use a new run_dir"
        )
    training.state = state
    return int(progress["step"])


def _device_batch(batch: dict[str, np.ndarray], batch_sharding) -> dict[str, jax.Array]:
    """Place the global batch on its sharding; each process uploads only its devices' slices."""
    return {
        key: jax.make_array_from_callback(value.shape, batch_sharding, lambda index, value=value: value[index])
        for key, value in batch.items()
    }
