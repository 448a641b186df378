"""Pretraining one rung of the demo ladder with the project's training loop, keeping intermediate
checkpoints, resumable after a kill.

Each rung is a tiny LLaMA (`emergence_jax.models`) trained by `train.loop.run_finetuning` (the same
loop, step, optimizer and Orbax train-state checkpoints as the `finetune` command) on the rung's
pretraining corpus: `steps × batch_size` sequences of the world, every token after BOS a target.
AdamW with a short warmup, then a constant learning rate, so intermediate checkpoints carry no
schedule effect. The loop's `on_step` hook writes parameter snapshots (`checkpoints.orbax.save_params`)
at the checkpoint steps; a complete snapshot is never rewritten, a half-written one is redone. The
loop resumes from its newest train-state checkpoint with the exact batch order.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import jax

from emergence_jax import sharding
from emergence_jax.checkpoints.orbax import save_params
from emergence_jax.demo.corpus import BOS, VOCAB_SIZE, WorldSpec, corpus_sequences
from emergence_jax.models import LlamaConfig, build_model
from emergence_jax.models.build import count_params
from emergence_jax.train.batches import TokenizedExample
from emergence_jax.train.config import CheckpointConfig, DataConfig, EvalConfig, FinetuneConfig, OptimConfig
from emergence_jax.train.loop import run_finetuning


@dataclasses.dataclass(frozen=True)
class Rung:
    """One model of the ladder: its width, depth, training steps, which steps to keep as
    checkpoints, and the seed of its initialisation."""

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    steps: int
    checkpoint_steps: tuple[int, ...]
    seed: int = 0

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


def pretraining_corpus(world: WorldSpec, steps: int, batch_size: int) -> list[TokenizedExample]:
    """The `steps × batch_size` pretraining sequences as loop examples: BOS is the prompt, the rest the target."""
    tokens = corpus_sequences(world, steps * batch_size, stream=0)
    return [TokenizedExample((int(row[0]),), tuple(row[1:].tolist())) for row in tokens]


def pretrain_rung(rung: Rung, world: WorldSpec, settings: PretrainSettings, out_dir: Path, *, log=print) -> dict[int, Path]:
    """Train `rung` (resuming if interrupted); returns {step: snapshot folder} for its checkpoint steps."""
    snapshots = {step: out_dir / "checkpoints" / checkpoint_name(rung, step) for step in rung.checkpoint_steps}
    if all((path / "config.json").exists() for path in snapshots.values()):
        return snapshots
    config = FinetuneConfig(
        run_dir=str(out_dir / "train_state" / rung.name),
        seed=rung.seed,
        data=DataConfig(num_examples=rung.steps * settings.batch_size, max_length=1 + world.sequence_length),
        optim=OptimConfig(
            learning_rate=settings.learning_rate,
            schedule="constant",
            warmup_fraction=settings.warmup_steps / rung.steps,
            b2=settings.b2,
            max_grad_norm=1.0,
            batch_size=settings.batch_size,
        ),
        checkpoint=CheckpointConfig(every_steps=min(rung.checkpoint_steps), keep=1, export_merged=False),
        eval=EvalConfig(enabled=False),
        log_every_steps=50,
    )
    started = time.perf_counter()

    def keep_snapshot(done: int, training) -> None:
        folder = snapshots.get(done)
        if folder is not None and not (folder / "config.json").exists():
            shutil.rmtree(folder, ignore_errors=True)  # a snapshot cut short by a kill
            save_params(training.model(), folder)
        if done % 500 == 0:
            log(f"{rung.name}: step {done}/{rung.steps}, {done / (time.perf_counter() - started):.0f} steps/s since start")

    mesh = sharding.make_mesh(devices=jax.devices()[:1])
    model = build_model(rung.config(), seed=rung.seed, mesh=mesh)
    outcome = run_finetuning(
        config, model, pretraining_corpus(world, rung.steps, settings.batch_size),
        mesh=mesh, run_dir=config.run_dir, progress=False, on_step=keep_snapshot,
    )
    if outcome.preempted:
        raise SystemExit(143)
    return snapshots
