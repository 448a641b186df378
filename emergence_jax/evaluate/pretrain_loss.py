"""Pretraining loss on a held-out corpus: mean next-token cross-entropy over packed sequences.

This is the x-axis of every emergence plot, so it is measured one way: each packed sequence of
`L` tokens predicts its tokens 2..L from the ones before (the first token of a sequence has no
context and is not scored), and the loss is the mean over all scored tokens of all sequences, in
nats/token. Bits/byte divides the same total by ln 2 and by the UTF-8 byte count of the text the
tokens came from, which makes models with different tokenizers comparable.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from tqdm.auto import tqdm

from emergence_jax.errors import UserError
from emergence_jax.evaluate.scoring import QueryScorer


@dataclasses.dataclass(frozen=True)
class PretrainLoss:
    """`nats_per_token` over `tokens` scored tokens; `bits_per_byte` when the byte count is known."""

    nats_per_token: float
    tokens: int
    bits_per_byte: float | None = None
    text_bytes: int | None = None


def pretrain_loss(
    scorer: QueryScorer,
    sequences: np.ndarray,
    *,
    lengths: np.ndarray | None = None,
    text_bytes: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> PretrainLoss:
    """Mean token cross-entropy of `sequences` int32[N, L] (packed, right-padded).

    `lengths[i]` is the number of real tokens in row `i` (default: all `L`); positions past it are
    padding and never scored. `text_bytes` is the UTF-8 size of the text behind the tokens.
    """
    sequences = np.asarray(sequences, dtype=np.int32)
    if sequences.ndim != 2 or sequences.shape[1] < 2:
        raise UserError(f"pretraining-loss sequences must be [num_sequences, length >= 2], got shape {sequences.shape}")
    num_rows, length = sequences.shape
    lengths = np.full(num_rows, length) if lengths is None else np.asarray(lengths)
    total_nats = 0.0
    total_tokens = int(np.sum(np.clip(lengths - 1, 0, None)))
    if total_tokens == 0:
        raise UserError("the pretraining-loss corpus has no token to score; every sequence needs at least 2 tokens")
    positions = np.broadcast_to(np.arange(length - 1, dtype=np.int32), (batch_size, length - 1))
    for start in tqdm(range(0, num_rows, batch_size), desc="pretraining loss", unit="batch", disable=not progress):
        batch = np.zeros((batch_size, length), dtype=np.int32)
        rows = sequences[start : start + batch_size]
        batch[: len(rows)] = rows
        logprobs, _ = scorer(batch[:, :-1], positions, batch[:, 1:])
        scored = np.arange(length - 1)[None, :] < (lengths[start : start + batch_size, None] - 1)
        total_nats -= float(np.sum(logprobs[: len(rows)], where=scored, dtype=np.float64))
    if not math.isfinite(total_nats):
        raise UserError(
            f"pretraining loss is {total_nats / total_tokens} nats/token, not a finite number: the checkpoint's weights "
            "most likely hold NaN/inf values (or the compute dtype overflowed); check the weights, or retry with --compute-dtype float32"
        )
    bits_per_byte = None
    if text_bytes is not None:
        if text_bytes <= 0:
            raise UserError(f"text byte count must be positive for bits/byte, got {text_bytes}")
        bits_per_byte = total_nats / math.log(2) / text_bytes
    return PretrainLoss(total_nats / total_tokens, total_tokens, bits_per_byte, text_bytes)
