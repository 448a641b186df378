"""Scoring demo checkpoints: held-out pretraining loss (nats/token) and few-shot multiple-choice
accuracy, as pure jitted functions of a parameter tree so finetuned runs can be scored under vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from emergence_jax.demo.corpus import Episodes
from emergence_jax.train.step import target_token_loss


def sequence_nll(graphdef: nnx.GraphDef, params, tokens: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(summed next-token NLL in nats, number of predicted tokens) of [batch, T] sequences, BOS not scored."""
    model = nnx.merge(graphdef, params)
    loss_mask = jnp.ones_like(tokens).at[:, 0].set(0)
    return target_token_loss(model(tokens), tokens, loss_mask)


def choice_scores(graphdef: nnx.GraphDef, params, tokens: jax.Array, answer_positions: jax.Array, choices: jax.Array) -> jax.Array:
    """[batch, queries, choices] log-probabilities of each candidate answer token (teacher forced)."""
    model = nnx.merge(graphdef, params)
    logits = model(tokens)
    log_probs = jax.nn.log_softmax(logits[:, answer_positions - 1], axis=-1)
    return jnp.take_along_axis(log_probs, choices, axis=-1)


def accuracy_from_scores(scores: jax.Array) -> jax.Array:
    """Fraction of queries whose correct choice (index 0) scores highest; ties count as wrong."""
    best_other = jnp.max(scores[..., 1:], axis=-1)
    return jnp.mean((scores[..., 0] > best_other).astype(jnp.float32), axis=(-2, -1))


def correct_probability(scores: jax.Array) -> jax.Array:
    """Mean probability of the correct choice, renormalised over the choices (a continuous metric)."""
    return jnp.mean(jax.nn.softmax(scores, axis=-1)[..., 0], axis=(-2, -1))


@jax.jit(static_argnums=0)
def _heldout_loss(graphdef, params, tokens):
    total, count = sequence_nll(graphdef, params, tokens)
    return total / count


@jax.jit(static_argnums=0)
def _fewshot(graphdef, params, tokens, answer_positions, choices):
    scores = choice_scores(graphdef, params, tokens, answer_positions, choices)
    return accuracy_from_scores(scores), correct_probability(scores)


def heldout_loss(model: nnx.Module, tokens: np.ndarray) -> float:
    """Mean next-token loss (nats/token) of `model` on held-out [n, T] corpus sequences."""
    graphdef, params = nnx.split(model)
    return float(_heldout_loss(graphdef, params, jnp.asarray(tokens)))


def fewshot_accuracy(model: nnx.Module, episodes: Episodes) -> tuple[float, float]:
    """(accuracy, mean correct-choice probability) over every query of `episodes`."""
    graphdef, params = nnx.split(model)
    accuracy, probability = _fewshot(graphdef, params, jnp.asarray(episodes.tokens), jnp.asarray(episodes.answer_positions), jnp.asarray(episodes.choices))
    return float(accuracy), float(probability)
