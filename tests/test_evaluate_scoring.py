"""Batching, padding, bucketing and prefix sharing give the log-likelihoods of unbatched scoring.

The model is a small causal toy written twice, in JAX (what the scorer runs) and in NumPy (the
reference, scoring one unpadded sequence at a time), so the test isolates the scoring machinery.
"""

import math

import numpy as np
import pytest

from emergence_jax.evaluate.multiple_choice import ScoreRequest, outcome_from_logprobs, score_requests, summarize_multiple_choice
from emergence_jax.evaluate.pretrain_loss import pretrain_loss
from emergence_jax.evaluate.scoring import PureLanguageModel, QueryScorer, bucket_length

VOCAB, WIDTH, MAX_LENGTH = 37, 8, 64


def _toy_params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "embed": rng.normal(size=(VOCAB, WIDTH)).astype(np.float32),
        "position": rng.normal(size=(MAX_LENGTH, WIDTH)).astype(np.float32),
        "out": rng.normal(size=(WIDTH, VOCAB)).astype(np.float32),
    }


def _toy_apply(params, tokens):
    """Causal: position t sees the running mean of token embeddings up to t, plus its position."""
    import jax.numpy as jnp

    embedded = params["embed"][tokens]
    steps = jnp.arange(1, tokens.shape[1] + 1, dtype=jnp.float32)[None, :, None]
    hidden = jnp.tanh(jnp.cumsum(embedded, axis=1) / steps + params["position"][None, : tokens.shape[1]])
    return hidden @ params["out"]


def _reference_token_logprobs(params, sequence):
    """log p(sequence[t + 1] | sequence[:t + 1]) for each t, in float64 NumPy, one sequence."""
    sequence = np.asarray(sequence)
    embedded = params["embed"][sequence[:-1]].astype(np.float64)
    steps = np.arange(1, len(sequence), dtype=np.float64)[:, None]
    hidden = np.tanh(np.cumsum(embedded, axis=0) / steps + params["position"][: len(sequence) - 1])
    logits = hidden @ params["out"]
    log_softmax = logits - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1, keepdims=True)) - logits.max(-1, keepdims=True)
    return log_softmax[np.arange(len(sequence) - 1), sequence[1:]]


def _reference_score(params, request, max_length):
    full = list(request.context + request.continuation)[-(max_length + 1) :]
    return float(np.sum(_reference_token_logprobs(params, full)[-len(request.continuation) :]))


@pytest.fixture(scope="module")
def scorer():
    return QueryScorer(PureLanguageModel(_toy_apply, _toy_params()))


def test_bucket_length_is_a_power_of_two_capped_by_the_context():
    assert [bucket_length(n) for n in (1, 16, 17, 33, 100)] == [16, 16, 32, 64, 128]
    assert bucket_length(70, maximum=80) == 80
    assert bucket_length(3, minimum=4) == 4


def test_batched_scores_equal_one_at_a_time_reference(scorer):
    rng = np.random.default_rng(1)
    requests = []
    for _ in range(7):
        context = tuple(rng.integers(1, VOCAB, size=rng.integers(1, 30)))
        # Four one-token choices sharing the context (scored from one row) ...
        requests += [ScoreRequest(context, (int(t),)) for t in rng.choice(np.arange(1, VOCAB), 4, replace=False)]
        # ... and multi-token choices of different lengths (one row each).
        requests += [ScoreRequest(context, tuple(rng.integers(1, VOCAB, size=rng.integers(2, 6)))) for _ in range(2)]
    # A context longer than the window: loses tokens from the left.
    requests.append(ScoreRequest(tuple(rng.integers(1, VOCAB, size=MAX_LENGTH + 9)), (3, 4, 5)))
    requests.append(ScoreRequest(tuple(rng.integers(1, VOCAB, size=MAX_LENGTH + 2)), (7,)))
    scores = score_requests(scorer, requests, max_length=MAX_LENGTH, batch_size=3)
    expected = [_reference_score(scorer.model.params, r, MAX_LENGTH) for r in requests]
    np.testing.assert_allclose([s.logprob for s in scores], expected, rtol=1e-5, atol=1e-5)


def test_is_greedy_means_every_continuation_token_is_the_argmax(scorer):
    params = scorer.model.params
    context = (5, 9, 2)
    greedy_continuation = []
    sequence = list(context)
    for _ in range(3):
        logits_next = [_reference_token_logprobs(params, sequence + [t])[-1] for t in range(VOCAB)]
        token = int(np.argmax(logits_next))
        greedy_continuation.append(token)
        sequence.append(token)
    other = (greedy_continuation[0], (greedy_continuation[1] + 1) % VOCAB)
    scores = score_requests(scorer, [ScoreRequest(context, tuple(greedy_continuation)), ScoreRequest(context, other)], max_length=MAX_LENGTH)
    assert [s.is_greedy for s in scores] == [True, False]


def test_metrics_of_one_prompt_by_hand():
    outcome = outcome_from_logprobs([-2.0, -3.0, -1.5], [" aaaa", " b", " cccccccccc"], answer_index=1)
    assert outcome.predicted == 2  # -1.5 is the highest total
    assert outcome.predicted_length_normalized == 2  # -1.5 / 11 chars beats -2/5 and -3/2
    probabilities = np.exp([-2.0, -3.0, -1.5]) / np.exp([-2.0, -3.0, -1.5]).sum()
    assert outcome.correct_prob == pytest.approx(probabilities[1])
    assert outcome.brier == pytest.approx(probabilities[0] ** 2 + (1 - probabilities[1]) ** 2 + probabilities[2] ** 2)
    normalized = outcome_from_logprobs([-2.0, -1.9], [" a long answer", " b"], answer_index=0)
    assert (normalized.predicted, normalized.predicted_length_normalized) == (1, 0)
    summary = summarize_multiple_choice([outcome, normalized])
    assert summary["accuracy"] == 0.0 and summary["length_normalized_accuracy"] == 0.5
    assert summary["logprob"] == pytest.approx((-3.0 + -2.0) / 2)


def test_pretrain_loss_equals_numpy_cross_entropy(scorer):
    rng = np.random.default_rng(2)
    sequences = rng.integers(0, VOCAB, size=(11, 24)).astype(np.int32)
    lengths = np.full(11, 24)
    lengths[-1] = 10  # the last packed sequence is partial; its padding must not count
    sequences[-1, 10:] = 0
    result = pretrain_loss(scorer, sequences, lengths=lengths, text_bytes=1000, batch_size=4)
    token_losses = np.concatenate([-_reference_token_logprobs(scorer.model.params, row[:n]) for row, n in zip(sequences, lengths)])
    assert result.tokens == len(token_losses) == 10 * 23 + 9
    assert result.nats_per_token == pytest.approx(token_losses.mean(), rel=1e-5)
    assert result.bits_per_byte == pytest.approx(token_losses.sum() / math.log(2) / 1000, rel=1e-5)
