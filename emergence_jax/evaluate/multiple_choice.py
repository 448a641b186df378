"""Multiple choice by log-likelihood: score each choice's continuation after the context.

Tokenization follows lm-eval-harness so numbers compare with published ones: trailing whitespace
of the context moves to the front of the continuation, the context is `encode(context)`, and the
continuation is the tail of `encode(context + continuation)` after that many tokens (so a merge
across the boundary counts towards the continuation). The beginning-of-sequence token, when the tokenizer has one,
starts every row, so an empty context is scored too. Too-long rows lose tokens from the left.

Choices that share their context and are one token each (MMLU's " A" ... " D") are scored from a
single row: one forward pass, the log-softmax at the last context position read at each choice's
token. Other choices get one row each; rows are sorted by length and padded to bucketed shapes.

Metrics per prompt (lm-eval names in brackets):
- accuracy [acc]: the choice with the highest total log-likelihood is the answer;
- length-normalised accuracy [acc_norm]: the same after dividing by the choice's length in
  characters (Unicode code points, as lm-eval does);
- probability of the correct choice: softmax of the total log-likelihoods over the choices;
- Brier score: sum over choices of (that probability - [choice is correct])^2, in [0, 2].
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from emergence_jax.data.prompts import MultipleChoicePrompt
from emergence_jax.errors import UserError
from emergence_jax.evaluate.scoring import QueryScorer, bucket_length


class Tokenizer(Protocol):
    bos_id: int | None

    def encode(self, text: str) -> list[int]: ...


@dataclasses.dataclass(frozen=True)
class ScoreRequest:
    """Score `continuation` token ids after `context` token ids (the context includes any BOS)."""

    context: tuple[int, ...]
    continuation: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ChoiceScore:
    """Total log-likelihood of a continuation (nats) and whether greedy decoding produces it."""

    logprob: float
    is_greedy: bool


def encode_request(tokenizer: Tokenizer, context: str, continuation: str, *, add_bos: bool = True) -> ScoreRequest:
    """Token ids for scoring `continuation` after `context`, split at the boundary lm-eval uses."""
    trailing_whitespace = len(context) - len(context.rstrip())
    if trailing_whitespace:
        continuation = context[-trailing_whitespace:] + continuation
        context = context[:-trailing_whitespace]
    whole = list(tokenizer.encode(context + continuation))
    context_ids = list(tokenizer.encode(context))
    continuation_ids = whole[len(context_ids):]
    if not continuation_ids:
        raise UserError(f"choice {continuation!r} encodes to no tokens after its context; every choice needs text")
    prefix = [tokenizer.bos_id] if add_bos and tokenizer.bos_id is not None else []
    return ScoreRequest(tuple(prefix + context_ids), tuple(continuation_ids))


@dataclasses.dataclass
class _Row:
    tokens: list[int]
    queries: list[tuple[int, int, int]]  # (position, target token, request index)


def _rows_for(requests: Sequence[ScoreRequest], max_length: int) -> list[_Row]:
    """One row per request, except that one-token continuations after an identical context share a row."""
    single_token_groups: dict[tuple[int, ...], list[int]] = {}
    for index, request in enumerate(requests):
        if len(request.continuation) == 1:
            single_token_groups.setdefault(request.context, []).append(index)
    rows = []
    for context, indices in single_token_groups.items():
        tokens = list(context[-max_length:])
        rows.append(_Row(tokens, [(len(tokens) - 1, requests[i].continuation[0], i) for i in indices]))
    for index, request in enumerate(requests):
        if len(request.continuation) == 1:
            continue
        if len(request.continuation) > max_length:
            raise UserError(f"a choice is {len(request.continuation)} tokens, longer than the model's context of {max_length}")
        full = list(request.context + request.continuation)[-(max_length + 1):]
        tokens = full[:-1]
        first = len(tokens) - len(request.continuation)
        rows.append(_Row(tokens, [(first + k, target, index) for k, target in enumerate(request.continuation)]))
    return rows


def score_requests(
    scorer: QueryScorer,
    requests: Sequence[ScoreRequest],
    *,
    max_length: int,
    batch_size: int = 16,
    progress: bool = False,
) -> list[ChoiceScore]:
    """Log-likelihood of each request's continuation, in request order.

    `max_length` is the model's context window in tokens; `batch_size` rows run per forward pass.
    """
    rows = sorted(_rows_for(requests, max_length), key=lambda row: -len(row.tokens))
    logprobs = np.zeros(len(requests), dtype=np.float64)
    greedy = np.ones(len(requests), dtype=bool)
    for start in tqdm(range(0, len(rows), batch_size), desc="scoring", unit="batch", disable=not progress):
        batch = rows[start : start + batch_size]
        length = bucket_length(max(len(r.tokens) for r in batch), maximum=max_length)
        num_queries = bucket_length(max(len(r.queries) for r in batch), minimum=4)
        tokens = np.zeros((batch_size, length), dtype=np.int32)
        positions = np.zeros((batch_size, num_queries), dtype=np.int32)
        targets = np.zeros((batch_size, num_queries), dtype=np.int32)
        for b, row in enumerate(batch):
            tokens[b, : len(row.tokens)] = row.tokens
            for q, (position, target, _) in enumerate(row.queries):
                positions[b, q] = position
                targets[b, q] = target
        row_logprobs, row_greedy = scorer(tokens, positions, targets)
        for b, row in enumerate(batch):
            for q, (_, _, index) in enumerate(row.queries):
                logprobs[index] += row_logprobs[b, q]
                greedy[index] &= bool(row_greedy[b, q])
    return [ChoiceScore(float(lp), bool(g)) for lp, g in zip(logprobs, greedy)]


@dataclasses.dataclass(frozen=True)
class MultipleChoiceOutcome:
    """One prompt's scores: per-choice log-likelihoods (nats) and the derived metrics."""

    logprobs: tuple[float, ...]
    answer_index: int
    predicted: int
    predicted_length_normalized: int
    correct_prob: float
    brier: float

    @property
    def correct(self) -> bool:
        return self.predicted == self.answer_index

    @property
    def correct_length_normalized(self) -> bool:
        return self.predicted_length_normalized == self.answer_index


def outcome_from_logprobs(logprobs: Sequence[float], continuations: Sequence[str], answer_index: int) -> MultipleChoiceOutcome:
    """Metrics of one prompt from its choices' total log-likelihoods (nats)."""
    scores = np.asarray(logprobs, dtype=np.float64)
    characters = np.array([max(len(c), 1) for c in continuations], dtype=np.float64)
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    truth = np.zeros_like(probabilities)
    truth[answer_index] = 1.0
    return MultipleChoiceOutcome(
        logprobs=tuple(float(s) for s in scores),
        answer_index=answer_index,
        predicted=int(np.argmax(scores)),
        predicted_length_normalized=int(np.argmax(scores / characters)),
        correct_prob=float(probabilities[answer_index]),
        brier=float(np.sum((probabilities - truth) ** 2)),
    )


def evaluate_multiple_choice(
    scorer: QueryScorer,
    tokenizer: Tokenizer,
    prompts: Sequence[MultipleChoicePrompt],
    *,
    max_length: int,
    batch_size: int = 16,
    add_bos: bool = True,
    progress: bool = False,
) -> list[MultipleChoiceOutcome]:
    """Score every choice of every prompt; one outcome per prompt, in order."""
    requests, spans = [], []
    for prompt in prompts:
        if not 0 <= prompt.answer_index < len(prompt.continuations):
            raise UserError(f"answer index {prompt.answer_index} is outside the {len(prompt.continuations)} choices of a prompt")
        start = len(requests)
        requests.extend(encode_request(tokenizer, prompt.context, c, add_bos=add_bos) for c in prompt.continuations)
        spans.append((start, len(requests)))
    scores = score_requests(scorer, requests, max_length=max_length, batch_size=batch_size, progress=progress)
    return [
        outcome_from_logprobs([s.logprob for s in scores[start:end]], prompt.continuations, prompt.answer_index)
        for prompt, (start, end) in zip(prompts, spans)
    ]


def summarize_multiple_choice(outcomes: Sequence[MultipleChoiceOutcome]) -> dict[str, float]:
    """Means over prompts: accuracy, length_normalized_accuracy, correct_prob, brier, and
    logprob (mean log-likelihood of the correct choice, nats)."""
    if not outcomes:
        raise UserError("no prompts to evaluate; check the task's data and --limit")
    return {
        "accuracy": float(np.mean([o.correct for o in outcomes])),
        "length_normalized_accuracy": float(np.mean([o.correct_length_normalized for o in outcomes])),
        "correct_prob": float(np.mean([o.correct_prob for o in outcomes])),
        "brier": float(np.mean([o.brier for o in outcomes])),
        "logprob": float(np.mean([o.logprobs[o.answer_index] for o in outcomes])),
    }
