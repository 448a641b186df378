"""Finetuning a tiny LLaMA on a fixture task lowers held-out task loss and raises held-out accuracy."""

import jax
import jax.numpy as jnp
import numpy as np

from emergence_jax.config import config_from_dict
from emergence_jax.models import LlamaConfig, build_model
from emergence_jax.sharding import make_mesh
from emergence_jax.train.batches import BatchPlan
from emergence_jax.train.config import FinetuneConfig
from emergence_jax.train.loop import run_finetuning
from emergence_jax.train.step import target_token_loss
from emergence_jax.train.synthetic import synthetic_examples

VOCAB = 48
MODEL = LlamaConfig(vocab_size=VOCAB, hidden_size=48, intermediate_size=96, num_layers=2, num_heads=4)


def held_out_loss_and_accuracy(model, examples):
    """Mean target-token loss (nats) and the fraction of target tokens predicted exactly (greedy)."""
    plan = BatchPlan(tuple(examples), len(examples), 1, 16, 1, False, seed=0)
    batch = {k: jnp.asarray(v[0]) for k, v in plan.batch(0).items()}
    logits = model(batch["input_ids"], positions=batch["positions"], attention_mask=batch["attention_mask"])
    loss, count = target_token_loss(logits, batch["input_ids"], batch["loss_mask"])
    hits = (jnp.argmax(logits[:, :-1], -1) == batch["input_ids"][:, 1:]) * batch["loss_mask"][:, 1:]
    return float(loss / count), float(hits.sum() / count)


def test_finetuning_learns_the_task(tmp_path):
    config = config_from_dict(FinetuneConfig, {
        "seed": 0,
        "model": {"compute_dtype": "float32"},
        "data": {"min_steps": 120, "max_epochs": 200},
        "optim": {"learning_rate": 3e-3, "batch_size": 32, "warmup_fraction": 0.1, "weight_decay": 0.01},
        "checkpoint": {"every_steps": 0},
        "log_every_steps": 50,
    })
    train = synthetic_examples(128, vocab_size=VOCAB, prompt_length=10, target_length=1, seed=1)
    held_out = synthetic_examples(64, vocab_size=VOCAB, prompt_length=10, target_length=1, seed=2)
    mesh = make_mesh(1, -1, 1, devices=jax.devices()[:2])
    model = build_model(MODEL, seed=0, mesh=mesh)
    loss_before, accuracy_before = held_out_loss_and_accuracy(model, held_out)
    outcome = run_finetuning(config, model, train, mesh=mesh, run_dir=tmp_path, progress=False)
    loss_after, accuracy_after = held_out_loss_and_accuracy(outcome.training.model(), held_out)
    assert outcome.steps_done == outcome.plan.total_steps >= 120
    assert accuracy_before < 0.15  # chance is 1/45
    assert loss_after < loss_before - 1.0
    assert accuracy_after > 0.6
