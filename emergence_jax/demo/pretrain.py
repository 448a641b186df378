"""Pretraining one rung of the demo ladder with the project's train step, keeping intermediate
checkpoints, resumable after a kill.

Each rung is a tiny LLaMA (`emergence_jax.models`) trained by `train.step.setup_training` under the
optimizer of `train.optim.build_optimizer` (AdamW, short warmup, then a constant learning rate, so
intermediate checkpoints carry no schedule effect). The batch of step s is a pure function of
(world seed, s), so a run restored from its last train-state checkpoint continues exactly.
Parameter snapshots (`checkpoints.orbax.save_params`) are written at the checkpoint steps; a
snapshot that exists is never rewritten.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from emergence_jax import sharding
from emergence_jax.checkpoints.orbax import save_params
from emergence_jax.demo.corpus import BOS, VOCAB_SIZE, WorldSpec, corpus_sequences
from emergence_jax.models import LlamaConfig, build_model
from emergence_jax.models.build import count_params
from emergence_jax.train.checkpointing import TrainCheckpointer
from emergence_jax.train.config import OptimConfig
from emergence_jax.train.optim import build_optimizer
from emergence_jax.train.step import setup_training


@dataclasses.dataclass(frozen=True)
class Rung:
    """One model of the ladder: its width, depth, which steps to keep as checkpoints, and which of
    those to finetune (each only if its few-shot accuracy turns out to be at chance)."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    steps: int
    checkpoint_steps: tuple[int, ...]
    finetune_steps: tuple[int, ...] = ()
    seed: int = 0

    def __post_init__(self):
        if not set(self.finetune_steps) <= set(self.checkpoint_steps):
            raise ValueError(f"{self.name}: finetune_steps must be checkpoint steps")

    def config(self) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=self.hidden_size,
            intermediate_size=4 * self.hidden_size,
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            max_position_embeddings=64,
            rope_theta=100.0,
            bos_token_id=BOS,
        )

    def params(self) -> int:
        return count_params(self.config())


@dataclasses.dataclass(frozen=True)
class PretrainSettings:
    """Batch in sequences per step; learning rate peak (constant after `warmup_steps`)."""

    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    b2: float = 0.98


def checkpoint_name(rung: Rung, step: int) -> str:
    return f"{rung.name}@step{step}"


def training_flops(rung: Rung, step: int, world: WorldSpec, settings: PretrainSettings) -> float:
    """6 · parameters · tokens seen, the usual estimate of training FLOPs."""
    return 6.0 * rung.params() * step * settings.batch_size * world.sequence_length


def pretraining_batch(world: WorldSpec, step: int, batch_size: int) -> dict[str, np.ndarray]:
    """The batch of optimizer step `step`: [1, batch, 1 + sequence_length] arrays, loss on every token after BOS."""
    tokens = corpus_sequences(world, batch_size, stream=step)[None]
    ones = np.ones_like(tokens)
    loss_mask = ones.copy()
    loss_mask[..., 0] = 0
    positions = np.broadcast_to(np.arange(tokens.shape[-1], dtype=np.int32), tokens.shape).copy()
    return {"input_ids": tokens, "positions": positions, "attention_mask": ones, "loss_mask": loss_mask}


def pretrain_rung(rung: Rung, world: WorldSpec, settings: PretrainSettings, out_dir: Path, *, log=print) -> dict[int, Path]:
    """Train `rung` (resuming if interrupted); returns {step: snapshot folder} for its checkpoint steps."""
    snapshots = {step: out_dir / "checkpoints" / checkpoint_name(rung, step) for step in rung.checkpoint_steps}
    if all((path / "config.json").exists() for path in snapshots.values()):
        return snapshots
    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    optim = OptimConfig(
        learning_rate=settings.learning_rate,
        schedule="constant",
        warmup_fraction=settings.warmup_steps / rung.steps,
        b2=settings.b2,
        max_grad_norm=1.0,
        batch_size=settings.batch_size,
    )
    tx = build_optimizer(optim, rung.steps)
    model = build_model(rung.config(), seed=rung.seed, mesh=mesh)
    training = setup_training(model, tx, mesh)
    checkpointer = TrainCheckpointer(out_dir / "train_state" / rung.name, every_steps=min(rung.checkpoint_steps), keep=1)
    start = 0
    restored = checkpointer.restore_latest(training.state)
    if restored is not None:
        training.state, progress = restored
        start = int(progress["step"])
        log(f"{rung.name}: resuming pretraining at step {start}")
    started = time.perf_counter()
    metrics = None
    for step in range(start, rung.steps):
        batch = jax.device_put(pretraining_batch(world, step, settings.batch_size), training.step.batch_sharding)
        training.state, metrics = training.step(training.state, training.frozen, batch)
        done = step + 1
        if done in snapshots and not (snapshots[done] / "config.json").exists():
            save_params(training.model(), snapshots[done])
        if checkpointer.due(done) or done == rung.steps:
            checkpointer.save(done, training.state, {"step": done})
        if done % 500 == 0:
            rate = (done - start) / (time.perf_counter() - started)
            log(f"{rung.name}: step {done}/{rung.steps}, train loss {float(metrics['loss']):.3f}, {rate:.0f} steps/s")
    checkpointer.close()
    return snapshots
