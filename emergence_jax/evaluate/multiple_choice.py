"""Multiple choice by log-likelihood: score each choice's continuation after the context.

Tokenization follows lm-eval-harness so numbers compare with published ones: trailing whitespace
of the context moves to the front of the continuation, the context is `encode(context)`, and the
continuation is the tail of `encode(context + continuation)` after that many tokens (so a merge
across the boundary counts towards the continuation). The beginning-of-sequence token, when the tokenizer has one,
starts every row, so an empty context is scored too. Too-long rows lose tokens from the left.

The shared few-shot context is run once per prompt, not once per choice:
- choices of one token each (MMLU's " A" ... " D") are read from a single row, the log-softmax at
  the last context position taken at each choice's token;
- longer choices, when the model has a KV cache, run after that context's cached keys/values
  (the cache is copied once per choice);
- anything else (no KV cache, a context that must be truncated) gets one row per choice.
Rows are sorted by length and padded to bucketed (power-of-two) shapes, so few programs compile.

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


def _shared_context_groups(requests: Sequence[ScoreRequest], max_length: int) -> list[list[int]]:
    """Request indices grouped by context: multi-token continuations, 2+ per context, no truncation."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, request in enumerate(requests):
        if len(request.continuation) > 1:
            groups.setdefault(request.context, []).append(index)
    return [
        indices for context, indices in groups.items()
        if len(indices) > 1 and len(context) + max(len(requests[i].continuation) for i in indices) - 1 <= max_length
    ]


def _score_shared_context_groups(scorer, requests, groups, *, batch_size, logprobs, greedy, progress) -> None:
    """Run each group's context once and its continuations from the KV cache (see `QueryScorer`)."""
    groups = sorted(groups, key=lambda g: -len(requests[g[0]].context))
    group_batch = max(1, batch_size // 2)
    for start in tqdm(range(0, len(groups), group_batch), desc="scoring shared contexts", unit="batch", disable=not progress):
        batch = groups[start : start + group_batch]
        context_length = bucket_length(max(len(requests[g[0]].context) for g in batch))
        choices = max(len(g) for g in batch)
        continuation_length = bucket_length(max(len(requests[i].continuation) - 1 for g in batch for i in g), minimum=4)
        contexts = np.zeros((group_batch, context_length), dtype=np.int32)
        context_mask = np.zeros_like(contexts)
        inputs = np.zeros((group_batch, choices, continuation_length), dtype=np.int32)
        input_mask = np.zeros_like(inputs)
        first_targets = np.zeros((group_batch, choices), dtype=np.int32)
        next_targets = np.zeros_like(inputs)
        for b, group in enumerate(batch):
            context = requests[group[0]].context
            contexts[b, context_length - len(context) :] = context
            context_mask[b, context_length - len(context) :] = 1
            for k, index in enumerate(group):
                continuation = requests[index].continuation
                inputs[b, k, : len(continuation) - 1] = continuation[:-1]
                input_mask[b, k, : len(continuation) - 1] = 1
                first_targets[b, k] = continuation[0]
                next_targets[b, k, : len(continuation) - 1] = continuation[1:]
        totals, all_greedy = scorer.score_after_shared_context(contexts, context_mask, inputs, input_mask, first_targets, next_targets)
        for b, group in enumerate(batch):
            for k, index in enumerate(group):
                logprobs[index] = totals[b, k]
                greedy[index] = all_greedy[b, k]


def score_requests(
    scorer: QueryScorer,
    requests: Sequence[ScoreRequest],
    *,
    max_length: int,
    batch_size: int = 16,
    progress: bool = False,
) -> list[ChoiceScore]:
    """Log-likelihood of each request's continuation, in request order.

    `max_length` is the model's context window in tokens; `batch_size` rows run per forward pass
    (with shared contexts: `batch_size // 2` contexts, each with all its continuations).
    """
    logprobs = np.zeros(len(requests), dtype=np.float64)
    greedy = np.ones(len(requests), dtype=bool)
    shared = _shared_context_groups(requests, max_length) if scorer.shares_prefixes else []
    if shared:
        _score_shared_context_groups(scorer, requests, shared, batch_size=batch_size, logprobs=logprobs, greedy=greedy, progress=progress)
    done = {index for group in shared for index in group}
    remaining = [i for i in range(len(requests)) if i not in done]
    rows = sorted(_rows_for([requests[i] for i in remaining], max_length), key=lambda row: -len(row.tokens))
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
            for q, (_, _, local_index) in enumerate(row.queries):
                index = remaining[local_index]
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
