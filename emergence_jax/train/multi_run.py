"""Many small finetuning runs of one checkpoint at once: vmapped over runs, scanned over steps.

For models whose arithmetic per step is smaller than the cost of dispatching a step (tiny models on
a CPU), `train.loop` would spend its time in Python; here run r of R is a row of one jitted
computation. Each run starts from the same parameters with a fresh optimizer state (the project's
`train.optim.build_optimizer`), takes the loss of `train.step.target_token_loss` on the masked
target tokens, and draws every minibatch with replacement from the first `amount` rows of its own
example pool, so a run is a pure function of (parameters, pool, amount, seed) and of nothing else.

The scan runs in chunks of `chunk_steps`: after each chunk `evaluate` (a pure function of one
run's model) is applied to every run, and the step keys are `fold_in(run_key, step)`, so the
result does not depend on how the steps are chunked.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from emergence_jax.errors import UserError
from emergence_jax.train.config import OptimConfig
from emergence_jax.train.optim import build_optimizer
from emergence_jax.train.step import target_token_loss


@dataclasses.dataclass(frozen=True)
class Run:
    """One finetuning run: train on the first `amount` rows of pool `pool`, with randomness `seed`."""

    amount: int
    pool: int
    seed: int


@dataclasses.dataclass
class MultiRunResult:
    """`params`: every run's trained parameters stacked on a leading run axis; `evaluations`: one
    entry per evaluation point, {"step": steps done, **evaluate's outputs as [R, ...] numpy arrays};
    `final_loss`: [R] training loss of each run's last step."""

    graphdef: nnx.GraphDef
    params: Any
    evaluations: list[dict[str, Any]]
    final_loss: np.ndarray

    def model(self, run: int) -> nnx.Module:
        return nnx.merge(self.graphdef, jax.tree.map(lambda x: x[run], self.params))


@functools.partial(jax.jit, static_argnames=("graphdef", "optim", "total_steps", "chunk", "evaluate"))
def _chunk(graphdef, optim, total_steps, chunk, evaluate, params, opt_state, start, pools, loss_mask, amounts, pool_index, run_keys, eval_data):
    tx = build_optimizer(optim, total_steps)

    def loss_fn(run_params, tokens, mask):
        total, count = target_token_loss(nnx.merge(graphdef, run_params)(tokens), tokens, mask)
        return total / jnp.maximum(count, 1.0)

    def one_run(run_params, run_opt, amount, pool, key):
        def step(carry, index):
            p, o = carry
            rows = jax.random.randint(jax.random.fold_in(key, index), (optim.batch_size,), 0, amount)
            loss, grads = jax.value_and_grad(loss_fn)(p, pools[pool][rows], loss_mask[pool][rows])
            updates, o = tx.update(grads, o, p)
            return (optax.apply_updates(p, updates), o), loss

        (p, o), losses = jax.lax.scan(step, (run_params, run_opt), start + jnp.arange(chunk))
        scores = evaluate(graphdef, p, eval_data) if evaluate is not None else {}
        return p, o, losses[-1], scores

    return jax.vmap(one_run)(params, opt_state, amounts, pool_index, run_keys)


def multi_run_finetune(
    model: nnx.Module,
    optim: OptimConfig,
    pools: np.ndarray,
    loss_mask: np.ndarray,
    runs: Sequence[Run],
    *,
    steps: int,
    evaluate: Callable[[nnx.GraphDef, Any, Any], dict[str, jax.Array]] | None = None,
    eval_data: Any = None,
    eval_every: int | None = None,
) -> MultiRunResult:
    """Finetune one copy of `model` per run in `runs`, all at once.

    pools: [P, N, T] int32 token rows (BOS first), one pool of N examples per subset; loss_mask:
    [P, N, T] or [T], 1 where a token is a target. `optim` gives the learning rate, schedule and
    `batch_size` (rows per step; no accumulation). `evaluate(graphdef, params, eval_data) ->
    {name: array}` is called on every run every `eval_every` steps (default: at the end only),
    inside the jit; pass a module-level function (it is a compile-cache key) and its data as
    `eval_data` (a pytree of arrays, an argument of the compiled call rather than a constant).
    """
    pools = np.asarray(pools, np.int32)
    if pools.ndim != 3:
        raise UserError(f"multi-run finetuning: pools must be [pools, examples, tokens], got shape {pools.shape}")
    loss_mask = np.broadcast_to(np.asarray(loss_mask, np.int32), pools.shape)
    for run in runs:
        if not 1 <= run.amount <= pools.shape[1] or not 0 <= run.pool < pools.shape[0]:
            raise UserError(f"multi-run finetuning: run {run} needs 1 <= amount <= {pools.shape[1]} and 0 <= pool < {pools.shape[0]}")
    if steps < 1 or optim.accumulation_steps != 1:
        raise UserError("multi-run finetuning: needs steps >= 1 and optim.accumulation_steps = 1")
    chunk = steps if not eval_every else int(eval_every)
    if steps % chunk:
        raise UserError(f"multi-run finetuning: eval_every {eval_every} must divide steps {steps}")
    graphdef, params = nnx.split(model)
    tx = build_optimizer(optim, steps)
    count = len(runs)
    stacked = jax.tree.map(lambda x: jnp.broadcast_to(x, (count, *x.shape)), params)
    opt_state = jax.vmap(tx.init)(stacked)
    arrays = (
        jnp.asarray(pools), jnp.asarray(loss_mask),
        jnp.asarray([r.amount for r in runs], jnp.int32), jnp.asarray([r.pool for r in runs], jnp.int32),
        jnp.stack([jax.random.key(r.seed) for r in runs]),
    )
    evaluations, last = [], None
    for start in range(0, steps, chunk):
        stacked, opt_state, last, scores = _chunk(graphdef, optim, steps, chunk, evaluate, stacked, opt_state, jnp.int32(start), *arrays, eval_data)
        if evaluate is not None:
            evaluations.append({"step": start + chunk, **{k: np.asarray(v) for k, v in scores.items()}})
    return MultiRunResult(graphdef, stacked, evaluations, np.asarray(last))
