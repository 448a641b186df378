"""Finetuning one demo checkpoint on several amounts D of task episodes (several subsets each), all
runs at once: one jitted call that vmaps over runs and scans over optimizer steps.

The generic loop (`train.loop`) dispatches one sharded step at a time, which on a laptop CPU costs
more than these tiny models' arithmetic; here every run of a checkpoint is a row of a vmapped
computation. The model is the project's LLaMA module (merged from the checkpoint's graph), the
loss is `train.step.target_token_loss` on the answer tokens only, and the optimizer is
`train.optim.build_optimizer`, as in the finetune command. Each step draws a minibatch with
replacement from the run's first D episodes of its subset pool, so a run is a pure function of
(checkpoint, D, subset seed).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from emergence_jax.demo.corpus import Episodes
from emergence_jax.demo.scoring import accuracy_from_scores, choice_scores, correct_probability
from emergence_jax.train.config import OptimConfig
from emergence_jax.train.optim import build_optimizer
from emergence_jax.train.step import target_token_loss


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    """Steps and batch (episodes) per run; constant learning rate (fresh AdamW state per run)."""

    steps: int = 800
    batch_size: int = 32
    learning_rate: float = 3e-3
    b2: float = 0.98

    def optimizer(self):
        config = OptimConfig(learning_rate=self.learning_rate, schedule="constant", warmup_fraction=0.0, b2=self.b2, max_grad_norm=1.0, batch_size=self.batch_size)
        return build_optimizer(config, self.steps)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _finetune_and_score(graphdef, settings: FinetuneSettings, params, pools, answer_mask, amounts, pool_index, keys, eval_tokens, eval_positions, eval_choices):
    tx = settings.optimizer()

    def loss_fn(run_params, tokens):
        model = nnx.merge(graphdef, run_params)
        total, count = target_token_loss(model(tokens), tokens, jnp.broadcast_to(answer_mask, tokens.shape))
        return total / count

    def one_run(amount, pool, key):
        def step(carry, step_key):
            run_params, opt_state = carry
            rows = jax.random.randint(step_key, (settings.batch_size,), 0, amount)
            loss, grads = jax.value_and_grad(loss_fn)(run_params, pools[pool][rows])
            updates, opt_state = tx.update(grads, opt_state, run_params)
            return (jax.tree.map(jnp.add, run_params, updates), opt_state), loss

        step_keys = jax.random.split(key, settings.steps)
        (trained, _), losses = jax.lax.scan(step, (params, tx.init(params)), step_keys)
        scores = choice_scores(graphdef, trained, eval_tokens, eval_positions, eval_choices)
        return accuracy_from_scores(scores), correct_probability(scores), losses[-1]

    return jax.vmap(one_run)(amounts, pool_index, keys)


def finetune_sweep(model: nnx.Module, pools: list[Episodes], runs: list[tuple[int, int]], eval_episodes: Episodes, settings: FinetuneSettings) -> list[dict]:
    """Finetune copies of `model`, one per (D, subset index into `pools`) in `runs`, and score each
    on `eval_episodes`. Returns one dict per run: D, subset, accuracy, correct_prob, final train loss."""
    graphdef, params = nnx.split(model)
    pool_tokens = jnp.asarray(np.stack([pool.tokens for pool in pools]))
    answer_mask = np.zeros(pool_tokens.shape[-1], np.int32)
    answer_mask[pools[0].answer_positions] = 1
    amounts = jnp.asarray([d for d, _ in runs], jnp.int32)
    pool_index = jnp.asarray([s for _, s in runs], jnp.int32)
    keys = jnp.stack([jax.random.key(1000 * s + d) for d, s in runs])
    accuracy, probability, last_loss = _finetune_and_score(
        graphdef, settings, params, pool_tokens, jnp.asarray(answer_mask), amounts, pool_index, keys,
        jnp.asarray(eval_episodes.tokens), jnp.asarray(eval_episodes.answer_positions), jnp.asarray(eval_episodes.choices),
    )
    return [
        {"train_examples": d, "subset": s, "accuracy": float(a), "correct_prob": float(p), "final_train_loss": float(l)}
        for (d, s), a, p, l in zip(runs, np.asarray(accuracy), np.asarray(probability), np.asarray(last_loss))
    ]
