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

import contextlib
import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class PureLanguageModel:
    """`apply(params, tokens int32[B, T]) -> logits float[B, T, V]`, with its parameters.

    `apply_with_prefix`, when the model has a KV cache, runs each of G contexts once and then K
    continuations after each from the cached keys/values:
    `(params, contexts int32[G, Tc] left-padded, context_mask, continuations int32[G, K, Tm]
    right-padded, continuation_mask) -> (logits after each context [G, V], logits [G, K, Tm, V])`.
    """

    apply: Callable[[Any, jax.Array], jax.Array]
    params: Any
    apply_with_prefix: Callable[..., tuple[jax.Array, jax.Array]] | None = None


def pure_language_model(model) -> PureLanguageModel:
    """Turn a Flax NNX `CausalLM` (`emergence_jax.models`) into a `PureLanguageModel`."""
    from flax import nnx

    from emergence_jax.models import init_cache

    graphdef, state = nnx.split(model)

    def apply(state, tokens):
        return nnx.merge(graphdef, state)(tokens)

    def apply_with_prefix(state, contexts, context_mask, continuations, continuation_mask):
        model = nnx.merge(graphdef, state)
        groups, context_length = contexts.shape
        _, choices, continuation_length = continuations.shape
        cache = init_cache(model.config, groups, context_length + continuation_length, getattr(model, "dtype", jnp.float32))
        positions = jnp.maximum(jnp.cumsum(context_mask, axis=1) - 1, 0)
        context_logits, cache = model(contexts, attention_mask=context_mask, positions=positions, cache=cache)
        # Each context's cache once per choice, along the batch axis (axis 1 of a scanned model's stacked [layers, batch, ...] cache).
        cache = jax.tree.map(lambda x: jnp.repeat(x, choices, axis=1 if x.ndim == 5 else 0) if x.ndim else x, cache)
        starts = jnp.sum(context_mask, axis=1, dtype=jnp.int32)
        continuation_positions = jnp.broadcast_to(
            starts[:, None, None] + jnp.arange(continuation_length, dtype=jnp.int32), continuations.shape
        )
        logits, _ = model(
            continuations.reshape(groups * choices, continuation_length),
            attention_mask=continuation_mask.reshape(groups * choices, continuation_length),
            positions=continuation_positions.reshape(groups * choices, continuation_length),
            cache=cache,
        )
        return context_logits[:, -1], logits.reshape(groups, choices, continuation_length, -1)

    return PureLanguageModel(apply, state, apply_with_prefix)


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


def _prefix_logprobs(apply_with_prefix, params, contexts, context_mask, continuations, continuation_mask, first_targets, next_targets):
    context_logits, logits = apply_with_prefix(params, contexts, context_mask, continuations, continuation_mask)
    context_log_probs = jax.nn.log_softmax(context_logits.astype(jnp.float32), axis=-1)
    first_logprobs = jnp.take_along_axis(context_log_probs, first_targets, axis=-1)
    first_greedy = jnp.argmax(context_logits, axis=-1)[:, None] == first_targets
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    next_logprobs = jnp.take_along_axis(log_probs, next_targets[..., None], axis=-1)[..., 0]
    next_greedy = jnp.argmax(logits, axis=-1) == next_targets
    return first_logprobs, first_greedy, next_logprobs, next_greedy


class QueryScorer:
    """Scores `(tokens, positions, targets)` batches with one compiled program per shape.

    With a `mesh`, every batch is split over its data axes (`data` x `fsdp`; the batch is padded
    with empty rows to a multiple of their size) and the small results come back replicated, so
    every process of a multi-host job passes the same host batch and reads the whole answer.
    Without one, arrays go to the default device.
    """

    def __init__(self, model: PureLanguageModel, *, mesh: jax.sharding.Mesh | None = None):
        self.model = model
        self.mesh = mesh
        out = None if mesh is None else jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        self._compiled = jax.jit(functools.partial(_query_logprobs, model.apply), out_shardings=out)
        self._compiled_prefix = (
            None
            if model.apply_with_prefix is None
            else jax.jit(functools.partial(_prefix_logprobs, model.apply_with_prefix), out_shardings=out)
        )

    @property
    def shares_prefixes(self) -> bool:
        """Whether continuations after one context can reuse that context's KV cache."""
        return self._compiled_prefix is not None

    def _mesh_context(self):
        """The mesh as the ambient one while tracing, so the model's activation constraints apply."""
        return contextlib.nullcontext() if self.mesh is None else jax.set_mesh(self.mesh)

    def _place(self, arrays: tuple[np.ndarray, ...]) -> tuple[tuple[jax.Array, ...], int]:
        """(device arrays, real rows): host int32 batches on the batch sharding (see the class)."""
        rows = len(arrays[0])
        if self.mesh is None:
            return tuple(jnp.asarray(a, dtype=jnp.int32) for a in arrays), rows
        parallel = data_parallel_size(self.mesh)
        padded = -(-rows // parallel) * parallel
        placed = []
        for array in arrays:
            array = np.asarray(array, dtype=np.int32)
            if padded != rows:
                array = np.concatenate([array, np.zeros((padded - rows, *array.shape[1:]), np.int32)])
            spec = jax.sharding.PartitionSpec(DATA_AXES, *([None] * (array.ndim - 1)))
            sharding = jax.sharding.NamedSharding(self.mesh, spec)
            placed.append(jax.make_array_from_callback(array.shape, sharding, lambda index, a=array: a[index]))
        return tuple(placed), rows

    def score_after_shared_context(
        self,
        contexts: np.ndarray,
        context_mask: np.ndarray,
        continuations: np.ndarray,
        continuation_mask: np.ndarray,
        first_targets: np.ndarray,
        next_targets: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Log-likelihood (nats) of K continuations after each of G contexts, running each context once.

        contexts int32[G, Tc] left-padded with `context_mask`; continuation inputs int32[G, K, Tm]
        (each continuation without its last token) right-padded with `continuation_mask`;
        `first_targets` [G, K] (each continuation's first token); `next_targets` [G, K, Tm] (each
        continuation without its first token). Returns (total log-likelihood float64[G, K], every token is the argmax bool[G, K]).
        """
        placed, rows = self._place((contexts, context_mask, continuations, continuation_mask, first_targets, next_targets))
        with self._mesh_context():
            outputs = self._compiled_prefix(self.model.params, *placed)
        first, first_greedy, following, following_greedy = (np.asarray(a)[:rows] for a in outputs)
        mask = np.asarray(continuation_mask, dtype=bool)
        totals = first.astype(np.float64) + np.sum(following, axis=-1, where=mask, dtype=np.float64)
        greedy = first_greedy & np.all(following_greedy | ~mask, axis=-1)
        return totals, greedy

    def __call__(self, tokens: np.ndarray, query_positions: np.ndarray, query_targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """tokens int32[B, T]; query_positions, query_targets int32[B, Q] ->
        (log p(target | tokens[:position + 1]) float32[B, Q] in nats, target is the argmax bool[B, Q])."""
        placed, rows = self._place((tokens, query_positions, query_targets))
        with self._mesh_context():
            logprobs, is_greedy = self._compiled(self.model.params, *placed)
        return np.asarray(logprobs)[:rows], np.asarray(is_greedy)[:rows]


# The mesh axes a batch's example dimension is split over (the `batch` rule of `DEFAULT_RULES`).
DATA_AXES = ("data", "fsdp")


def data_parallel_size(mesh: jax.sharding.Mesh) -> int:
    """How many ways a batch's example dimension is split on `mesh`."""
    return int(np.prod([mesh.shape[axis] for axis in DATA_AXES]))
