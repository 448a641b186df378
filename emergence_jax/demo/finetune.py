"""Finetuning one demo checkpoint on several amounts D of task examples (several subsets each), all
runs at once through `train.multi_run.multi_run_finetune` (the project's loss and optimizer,
vmapped over runs). Each run draws its minibatches with replacement from the first D examples of
its subset's pool, so a run is a pure function of (checkpoint, D, subset).

Two kinds of examples (`FinetuneSettings.data`):
- "documents": task documents in the pretraining format (`corpus.finetune_documents`), loss on
  every token after BOS. Measured (helper H, task fraction 0.5, d48, pretraining emergence
  between steps 2000 and 2250): from step 1000, 900 steps at lr 3e-3 give 8-shot accuracy 1.0
  for D = 16384 and 0.36 for D = 1024; from step 1500, 600 steps give 1.0 and 0.92.
- "episodes": the evaluation format, loss on the 4 answer tokens only. Far weaker: from steps
  1000 and 1500, 1200 steps at lr 1e-3 or 3e-3 left every D at chance; from step 1750, D = 16384
  recalls after 900 steps at lr 1e-3 (not at 3e-3).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import nnx

from emergence_jax.demo.corpus import Episodes, WorldSpec, episodes, finetune_documents
from emergence_jax.demo.scoring import accuracy_from_scores, choice_scores, correct_probability
from emergence_jax.train.config import OptimConfig
from emergence_jax.train.multi_run import Run, multi_run_finetune


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    """Steps and batch (episodes) per run; constant learning rate (fresh AdamW state per run)."""

    steps: int = 800
    batch_size: int = 32
    learning_rate: float = 3e-3
    b2: float = 0.98
    data: str = "documents"  # or "episodes" (see the module docstring)

    def optim(self) -> OptimConfig:
        return OptimConfig(learning_rate=self.learning_rate, schedule="constant", warmup_fraction=0.0, b2=self.b2, max_grad_norm=1.0, batch_size=self.batch_size)


def _evaluate(graphdef, params, eval_data) -> dict:
    scores = choice_scores(graphdef, params, *eval_data)
    return {"accuracy": accuracy_from_scores(scores), "correct_prob": correct_probability(scores)}


def finetune_pools(world: WorldSpec, settings: FinetuneSettings, count: int, subsets: int) -> tuple[np.ndarray, np.ndarray]:
    """([subsets, count, T] token pools, [T] loss mask) of `settings.data`'s kind of example."""
    if settings.data == "documents":
        tokens = np.stack([finetune_documents(world, count, subset=s) for s in range(subsets)])
        mask = np.ones(tokens.shape[-1], np.int32)
        mask[0] = 0
        return tokens, mask
    pools = [episodes(world, count, purpose="finetune", seed=s) for s in range(subsets)]
    mask = np.zeros(world.episode_length, np.int32)
    mask[pools[0].answer_positions] = 1
    return np.stack([pool.tokens for pool in pools]), mask


def finetune_sweep(model: nnx.Module, pools: tuple[np.ndarray, np.ndarray], runs: list[tuple[int, int]], eval_episodes: Episodes, settings: FinetuneSettings) -> list[dict]:
    """Finetune copies of `model`, one per (D, subset index) in `runs`, on `pools` (from
    `finetune_pools`), and score each on `eval_episodes`. Returns one dict per run: D, subset,
    accuracy, correct_prob, final train loss."""
    tokens, mask = pools
    eval_data = tuple(jnp.asarray(a) for a in (eval_episodes.tokens, eval_episodes.answer_positions, eval_episodes.choices))
    result = multi_run_finetune(
        model, settings.optim(), tokens, mask, [Run(d, s, 1000 * s + d) for d, s in runs],
        steps=settings.steps, evaluate=_evaluate, eval_data=eval_data,
    )
    scores = result.evaluations[-1]
    return [
        {"train_examples": d, "subset": s, "accuracy": float(a), "correct_prob": float(p), "final_train_loss": float(l)}
        for (d, s), a, p, l in zip(runs, scores["accuracy"], scores["correct_prob"], result.final_loss)
    ]
