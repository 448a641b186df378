"""Batched decoding with the KV cache: greedy, or temperature / top-p (nucleus) sampling.

Prompts are left-padded so every row writes the same cache slot at each step; positions count
real tokens only (`cumsum(mask) - 1`), as transformers' `generate` does, so padded and unpadded
prompts decode identically. The whole loop (prefill plus a `lax.while_loop` over new tokens) is
one jitted function, compiled once per (model, batch, prompt length, max_new_tokens, greedy or
not); list prompts are left-padded to a multiple of `PAD_MULTIPLE` tokens to bound compilations.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from emergence_jax.errors import UserError
from emergence_jax.models.base import CausalLM
from emergence_jax.models.layers import init_cache

PAD_MULTIPLE = 32


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, mask) `[batch, length]`, prompts right-aligned; length rounded up to `multiple`."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise UserError("generate: every prompt needs at least one token")
    length = -(-max(len(p) for p in prompts) // multiple) * multiple
    tokens = np.full((len(prompts), length), pad_id, np.int32)
    mask = np.zeros((len(prompts), length), np.int32)
    for row, prompt in enumerate(prompts):
        tokens[row, length - len(prompt) :] = prompt
        mask[row, length - len(prompt) :] = 1
    return tokens, mask


def generate(
    model: CausalLM,
    prompts: Sequence[Sequence[int]] | jax.Array | np.ndarray,
    *,
    attention_mask: jax.Array | np.ndarray | None = None,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    rng: jax.Array | None = None,
    eos_id: int | Sequence[int] | None = None,
    pad_id: int = 0,
) -> jax.Array:
    """New tokens `[batch, max_new_tokens]` (int32) continuing each prompt.

    `prompts` is a list of token lists, or a left-padded array `[batch, length]` with its
    `attention_mask` (1 = real token). `temperature == 0` decodes greedily; otherwise tokens are
    sampled from softmax(logits / temperature) restricted to the smallest set of tokens whose
    probability reaches `top_p`, seeded by `rng`. After a row emits an `eos_id`, the rest of it is
    `pad_id`, and decoding stops early once every row has.
    """
    if isinstance(prompts, (list, tuple)):
        tokens, mask = left_pad(prompts, pad_id, PAD_MULTIPLE)
    else:
        tokens = np.asarray(prompts, np.int32)
        mask = np.ones_like(tokens) if attention_mask is None else np.asarray(attention_mask, np.int32)
    if max_new_tokens < 1:
        raise UserError(f"generate: max_new_tokens must be at least 1, got {max_new_tokens}")
    greedy = temperature == 0.0
    if not greedy and rng is None:
        raise UserError("generate: sampling (temperature > 0) needs an rng key")
    eos = () if eos_id is None else (int(eos_id),) if np.ndim(eos_id) == 0 else tuple(int(e) for e in eos_id)
    graphdef, state = nnx.split(model)
    return _generate(
        graphdef,
        state,
        jnp.asarray(tokens),
        jnp.asarray(mask),
        jax.random.key(0) if rng is None else rng,
        jnp.float32(max(temperature, 1e-6)),
        jnp.float32(top_p),
        max_new_tokens=max_new_tokens,
        greedy=greedy,
        nucleus=not greedy and top_p < 1.0,
        eos=eos,
        pad_id=int(pad_id),
    )


def nucleus_threshold(probs: jax.Array, top_p) -> jax.Array:
    """Per row, the smallest probability a token may have and stay in the top-p nucleus.

    The nucleus is the smallest set of most-probable tokens whose mass reaches `top_p`: token i is
    kept when the tokens more probable than it hold less than `top_p`, i.e. when `p_i >= tau` for
    the largest probability `tau` with `mass(p >= tau) >= top_p`. `tau` is found by bisection on
    the bit patterns of the (non-negative float32) probabilities, 31 masked sums over the
    vocabulary, exact and without the full-vocabulary sort (a sort of [64, 4096] cost ~20x more
    than this on XLA:CPU). Returns `tau`'s bits, int32 `[batch]`; ties at `tau` are all kept.
    """
    bits = jax.lax.bitcast_convert_type(probs, jnp.int32)

    def halve(_, bounds):
        low, high = bounds  # mass(p >= low) >= top_p always; tau <= high
        middle = low + (high - low + 1) // 2
        enough = jnp.sum(jnp.where(bits >= middle[:, None], probs, 0.0), axis=-1) >= top_p
        return jnp.where(enough, middle, low), jnp.where(enough, high, middle - 1)

    low = jnp.zeros(probs.shape[:-1], jnp.int32)
    return jax.lax.fori_loop(0, 31, halve, (low, jnp.max(bits, axis=-1)))[0]


def _select(logits: jax.Array, key: jax.Array, temperature, top_p, greedy: bool, nucleus: bool) -> jax.Array:
    """Next tokens `[batch]`: argmax, or a draw from softmax(logits / temperature) (top-p when
    `nucleus`) by inverting the cumulative distribution at one uniform number per row (drawing
    Gumbel noise for every vocabulary entry cost ~10x more on XLA:CPU)."""
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    probs = jax.nn.softmax(logits.astype(jnp.float32) / temperature, axis=-1)
    if nucleus:
        tau = nucleus_threshold(probs, top_p)
        probs = jnp.where(jax.lax.bitcast_convert_type(probs, jnp.int32) >= tau[:, None], probs, 0.0)
    return inverse_cdf(probs, jax.random.uniform(key, (probs.shape[0],), minval=jnp.finfo(jnp.float32).tiny))


def inverse_cdf(probs: jax.Array, uniform: jax.Array) -> jax.Array:
    """Per row of `probs` `[batch, vocab]` (non-negative, not necessarily normalised), the token j
    with `cumulative[j-1] < u <= cumulative[j]` for `u = uniform * total` (`uniform` `[batch]` in
    (0, 1)), so a token of probability 0 is never chosen.

    Two levels instead of a cumulative sum over the whole vocabulary (XLA:CPU lowers that to a
    reduce-window, 2.8 ms of a 31 ms decode step at [64, 4096]): sum blocks of ~sqrt(vocab) tokens,
    find the block where u falls, then the token inside that block.
    """
    batch, vocab = probs.shape
    size = 1 << max(3, (vocab.bit_length() + 1) // 2)
    blocks = -(-vocab // size)
    tokens = jnp.pad(probs, ((0, 0), (0, blocks * size - vocab))).reshape(batch, blocks, size)
    mass = jnp.sum(tokens, axis=-1)
    cumulative = jnp.cumsum(mass, axis=-1)
    u = uniform * cumulative[:, -1]
    block = jnp.minimum(jnp.sum(cumulative < u[:, None], axis=-1), blocks - 1)
    below = jnp.where(block > 0, jnp.take_along_axis(cumulative, jnp.maximum(block - 1, 0)[:, None], axis=-1)[:, 0], 0.0)
    inside = jnp.take_along_axis(tokens, block[:, None, None], axis=1)[:, 0]
    j = jnp.sum(jnp.cumsum(inside, axis=-1) < (u - below)[:, None], axis=-1)
    # Rounding can put u past the block's own cumulative sum: then its last non-zero token.
    last = size - 1 - jnp.argmax(inside[:, ::-1] > 0, axis=-1)
    return (block * size + jnp.minimum(j, last)).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("graphdef", "max_new_tokens", "greedy", "nucleus", "eos", "pad_id"))
def _generate(graphdef, state, tokens, mask, rng, temperature, top_p, *, max_new_tokens, greedy, nucleus, eos, pad_id):
    model = nnx.merge(graphdef, state)
    batch, length = tokens.shape
    cache = init_cache(model.config, batch, length + max_new_tokens, model.dtype, stacked=model.scan_layers)
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0).astype(jnp.int32)
    logits, cache = model(tokens, attention_mask=mask, positions=positions, cache=cache, logits_to_keep=1)
    next_position = positions[:, -1] + 1
    eos_ids = jnp.asarray(eos if eos else (-1,), jnp.int32)

    def pick(logits, step, finished):
        key = jax.random.fold_in(rng, step)
        token = _select(logits, key, temperature, top_p, greedy, nucleus)
        token = jnp.where(finished, pad_id, token)
        return token, finished | jnp.isin(token, eos_ids)

    token, finished = pick(logits[:, -1], 0, jnp.zeros((batch,), bool))
    out = jnp.full((batch, max_new_tokens), pad_id, jnp.int32).at[:, 0].set(token)

    def cond(carry):
        step, _, _, finished, _, _ = carry
        return (step < max_new_tokens) & ~jnp.all(finished)

    def body(carry):
        step, token, position, finished, cache, out = carry
        logits, cache = model(token[:, None], positions=position[:, None], cache=cache)
        token, finished = pick(logits[:, -1], step, finished)
        return step + 1, token, position + 1, finished, cache, out.at[:, step].set(token)

    carry = (jnp.int32(1), token, next_position, finished, cache, out)
    return jax.lax.while_loop(cond, body, carry)[-1]
