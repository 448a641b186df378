"""AdamW with linear warmup then cosine/linear decay, global-norm clipping, decay on matrices only."""

from __future__ import annotations

import jax
import optax

from emergence_jax.train.config import OptimConfig


def learning_rate_schedule(config: OptimConfig, total_steps: int) -> optax.Schedule:
    """Learning rate per optimizer step: 0 -> peak over the warmup, then decay to the end fraction."""
    total_steps = max(int(total_steps), 1)
    warmup = min(int(round(config.warmup_fraction * total_steps)), total_steps - 1)
    peak = config.learning_rate
    end = peak * config.end_learning_rate_fraction
    if config.schedule == "constant":
        decay = optax.constant_schedule(peak)
    elif config.schedule == "linear":
        decay = optax.linear_schedule(peak, end, max(total_steps - warmup, 1))
    else:
        decay = optax.cosine_decay_schedule(peak, max(total_steps - warmup, 1), alpha=end / peak if peak else 0.0)
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def build_optimizer(config: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    """The optimizer for `total_steps` updates; weight decay skips vectors (norm scales, biases)."""
    schedule = learning_rate_schedule(config, total_steps)
    adamw = optax.adamw(
        schedule,
        b1=config.b1,
        b2=config.b2,
        eps=config.eps,
        weight_decay=config.weight_decay,
        mask=lambda params: jax.tree.map(lambda p: p.ndim >= 2, params),
    )
    if config.max_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), adamw)
    return adamw
