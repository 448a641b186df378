"""Jit-compiled log-probabilities of chosen tokens at chosen positions, for any causal LM.

Both multiple-choice scoring and pretraining loss reduce to one question: given right-padded token
rows, what is `log p(target | tokens before position)` at a few positions per row? Asking only at
those positions keeps the log-softmax off the full `[B, T, V]` logits.

A model enters as a `PureLanguageModel`: a pure `apply(params, tokens int32[B, T]) -> logits
[B, T, V]` and its `params`, so `jax.jit` traces it once per shape and the weights stay arguments
(never baked into the compiled program). Rows are right-padded: under a causal mask padding after a
position cannot change its logits, so no attention mask is needed.

Shapes are bucketed (`bucket_length`) so a whole evaluation compiles a handful of programs, not one
per example.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class PureLanguageModel:
    """`apply(params, tokens int32[B, T]) -> logits float[B, T, V]`, with its parameters."""

    apply: Callable[[Any, jax.Array], jax.Array]
    params: Any


def pure_language_model(model) -> PureLanguageModel:
    """Turn a Flax NNX causal LM (`model(input_ids) -> logits`) into a `PureLanguageModel`."""
    from flax import nnx

    graphdef, state = nnx.split(model)

    def apply(state, tokens):
        return nnx.merge(graphdef, state)(tokens)

    return PureLanguageModel(apply, state)


def bucket_length(length: int, *, minimum: int = 16, maximum: int | None = None) -> int:
    """The padded size for `length`: the next power of two (at least `minimum`), capped at
    `maximum` so a model's context window is never exceeded."""
    bucket = max(minimum, 1 << max(0, int(length) - 1).bit_length())
    if maximum is not None:
        bucket = min(bucket, max(maximum, int(length)))
    return bucket


def _query_logprobs(apply, params, tokens, query_positions, query_targets):
    logits = apply(params, tokens)
    picked = jnp.take_along_axis(logits, query_positions[:, :, None], axis=1).astype(jnp.float32)
    log_normalizer = jax.nn.logsumexp(picked, axis=-1)
    target_logits = jnp.take_along_axis(picked, query_targets[:, :, None], axis=-1)[:, :, 0]
    is_greedy = jnp.argmax(picked, axis=-1) == query_targets
    return target_logits - log_normalizer, is_greedy


class QueryScorer:
    """Scores `(tokens, positions, targets)` batches with one compiled program per shape."""

    def __init__(self, model: PureLanguageModel):
        self.model = model
        self._compiled = jax.jit(functools.partial(_query_logprobs, model.apply))

    def __call__(self, tokens: np.ndarray, query_positions: np.ndarray, query_targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """tokens int32[B, T]; query_positions, query_targets int32[B, Q] ->
        (log p(target | tokens[:position + 1]) float32[B, Q] in nats, target is the argmax bool[B, Q])."""
        logprobs, is_greedy = self._compiled(
            self.model.params,
            jnp.asarray(tokens, dtype=jnp.int32),
            jnp.asarray(query_positions, dtype=jnp.int32),
            jnp.asarray(query_targets, dtype=jnp.int32),
        )
        return np.asarray(logprobs), np.asarray(is_greedy)
