"""The demo's seeded synthetic world: a pretraining corpus in which one in-context skill is rare,
and the few-shot / finetuning episodes that probe that skill.

Why this task. Key→value recall from context ("k v ... k → v") is solved in small transformers by
induction heads, a two-layer circuit known to form abruptly during training (Olsson et al. 2022):
before it forms, a model cannot do better than guessing which of the values shown is the answer;
after, it copies the right one. That gives a real emergence curve against pretraining loss.

Why finetuning moves emergence, and why by more with more data. Pretraining sees the skill only
in task documents (a fraction `task_fraction` of sequences); finetuning (`demo.finetune`) trains
on task documents alone, so it builds the recall circuit in far fewer steps than pretraining
does. How much of that lands depends on D: a run draws 32 × steps documents from its first D, so
with small D it can lower its training loss by memorising them instead of learning to recall.
Measured (default world, 900 steps at lr 3e-3, step 1500 of d40, at half the steps of few-shot
emergence): D = 64 and 256 stay at chance, D = 1024 reaches 0.93–0.95, D ≥ 4096 1.0; at step 1000
only one D = 4096 subset (0.52) is above chance. The larger D, the further from emergence a
checkpoint can be and still be finetuned into recall, so the finetuned elbow moves to higher
loss as D grows (measured per D in the demo's report).

Token layout (vocabulary 97): 0 = BOS, 1..64 background, 65..80 keys, 81..96 values.
- Background sequence: a first-order Markov chain over the 64 background tokens; each row of the
  transition matrix is Dirichlet(0.3 · Zipf-shaped base, permuted per row) (≈ 2.6 nats/token).
- Task document: `pairs` key–value pairs; the document draws 3–8 of the 16 keys, gives each a
  random value, then samples pairs from those keys, so keys repeat and a repeated key's value can
  be predicted only by recalling it from earlier in the sequence.
- Episode (evaluation and finetuning): BOS, `shots` pairs with distinct keys and values, then
  `queries` of the shown keys, each followed by its value. A query is a 4-way multiple choice
  between the answer and 3 values of shots that are not queried (each shown exactly once, like
  the answer), so a model without recall is at chance 0.25 exactly.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

BOS = 0
NUM_BACKGROUND = 64
NUM_KEYS = 16
NUM_VALUES = 16
FIRST_BACKGROUND = 1
FIRST_KEY = FIRST_BACKGROUND + NUM_BACKGROUND
FIRST_VALUE = FIRST_KEY + NUM_KEYS
VOCAB_SIZE = FIRST_VALUE + NUM_VALUES
CHOICES = 4


@dataclasses.dataclass(frozen=True)
class WorldSpec:
    """The corpus and the task. sequence_length counts tokens after BOS (targets per sequence)."""

    seed: int = 0
    sequence_length: int = 32
    task_fraction: float = 0.25
    dirichlet_concentration: float = 0.3
    min_keys: int = 3
    max_keys: int = 8
    shots: int = 8
    queries: int = 4

    @property
    def pairs(self) -> int:
        return self.sequence_length // 2

    @property
    def episode_length(self) -> int:
        return 1 + 2 * (self.shots + self.queries)

    @property
    def chance(self) -> float:
        return 1.0 / CHOICES


@functools.lru_cache(maxsize=8)
def transition_matrix(spec: WorldSpec) -> np.ndarray:
    """[64, 64] row-stochastic background transitions, a pure function of `spec.seed`."""
    rng = np.random.default_rng([spec.seed, 1])
    base = 1.0 / np.arange(1, NUM_BACKGROUND + 1)
    base = base / base.sum() * NUM_BACKGROUND
    rows = [rng.dirichlet(spec.dirichlet_concentration * rng.permutation(base)) for _ in range(NUM_BACKGROUND)]
    return np.stack(rows)


def _background(rng: np.random.Generator, transitions: np.ndarray, count: int, length: int) -> np.ndarray:
    cumulative = np.cumsum(transitions, axis=1)
    cumulative[:, -1] = 1.0
    states = np.empty((count, length), np.int64)
    states[:, 0] = rng.integers(0, NUM_BACKGROUND, count)
    uniforms = rng.random((count, length))
    for t in range(1, length):
        rows = cumulative[states[:, t - 1]]
        states[:, t] = (uniforms[:, t, None] > rows).sum(axis=1)
    return np.minimum(states, NUM_BACKGROUND - 1) + FIRST_BACKGROUND


def _task_documents(rng: np.random.Generator, spec: WorldSpec, count: int) -> np.ndarray:
    num_keys = rng.integers(spec.min_keys, spec.max_keys + 1, count)
    key_sets = np.argsort(rng.random((count, NUM_KEYS)), axis=1)
    values = rng.integers(0, NUM_VALUES, (count, NUM_KEYS))
    picks = (rng.random((count, spec.pairs)) * num_keys[:, None]).astype(np.int64)
    keys = np.take_along_axis(key_sets, picks, axis=1)
    docs = np.empty((count, 2 * spec.pairs), np.int64)
    docs[:, 0::2] = keys + FIRST_KEY
    docs[:, 1::2] = np.take_along_axis(values, keys, axis=1) + FIRST_VALUE
    return docs


def corpus_sequences(spec: WorldSpec, count: int, stream: int) -> np.ndarray:
    """[count, 1 + sequence_length] int32 sequences (BOS first), a pure function of (seed, stream).

    Pretraining uses stream 0; held-out text and finetuning documents use streams of their own.
    """
    rng = np.random.default_rng([spec.seed, 2, stream])
    is_task = rng.random(count) < spec.task_fraction
    out = np.empty((count, 1 + spec.sequence_length), np.int64)
    out[:, 0] = BOS
    out[:, 1:] = _background(rng, transition_matrix(spec), count, spec.sequence_length)
    if is_task.any():
        out[is_task, 1:] = _task_documents(rng, spec, int(is_task.sum()))
    return out.astype(np.int32)


def finetune_documents(spec: WorldSpec, count: int, subset: int) -> np.ndarray:
    """[count, 1 + sequence_length] task documents (the pretraining format, every sequence a task
    document) for finetuning subset `subset`; the first D rows are the D-example subset."""
    return corpus_sequences(dataclasses.replace(spec, task_fraction=1.0), count, stream=2**30 + subset)


def heldout_stream() -> int:
    """The stream id of the held-out loss corpus (beyond any training step)."""
    return 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Episodes:
    """tokens [n, episode_length] int32; answer_positions [queries] (index of each answer token);
    choices [n, queries, 4] token ids with the correct one first."""

    tokens: np.ndarray
    answer_positions: np.ndarray
    choices: np.ndarray

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def episodes(spec: WorldSpec, count: int, *, purpose: str, seed: int) -> Episodes:
    """`count` episodes for `purpose` ("eval" or "finetune"), a pure function of (spec.seed, purpose, seed).

    Finetuning pools are nested: the first D episodes of a pool are the D-example subset.
    """
    purpose_id = {"eval": 3, "finetune": 4}[purpose]
    spare = spec.shots - spec.queries
    widths = np.cumsum([0, NUM_KEYS, NUM_VALUES, spec.shots, spec.queries * spare])
    # one generator per episode, so the first D episodes do not depend on how many are drawn
    uniforms = np.stack([np.random.default_rng([spec.seed, purpose_id, seed, i]).random(widths[-1]) for i in range(count)])
    part = lambda j: uniforms[:, widths[j] : widths[j + 1]]
    keys = np.argsort(part(0), axis=1)[:, : spec.shots]
    values = np.argsort(part(1), axis=1)[:, : spec.shots]
    order = np.argsort(part(2), axis=1)
    queried, unqueried = order[:, : spec.queries], order[:, spec.queries :]
    tokens = np.empty((count, spec.episode_length), np.int64)
    tokens[:, 0] = BOS
    shot_end = 1 + 2 * spec.shots
    tokens[:, 1:shot_end:2] = keys + FIRST_KEY
    tokens[:, 2:shot_end:2] = values + FIRST_VALUE
    query_keys = np.take_along_axis(keys, queried, axis=1)
    answers = np.take_along_axis(values, queried, axis=1)
    tokens[:, shot_end::2] = query_keys + FIRST_KEY
    tokens[:, shot_end + 1 :: 2] = answers + FIRST_VALUE
    distractor_order = np.argsort(part(3).reshape(count, spec.queries, spare), axis=2)[:, :, : CHOICES - 1]
    distractor_slots = np.take_along_axis(np.broadcast_to(unqueried[:, None, :], distractor_order.shape[:2] + unqueried.shape[1:]), distractor_order, axis=2)
    distractors = np.take_along_axis(values[:, None, :].repeat(spec.queries, axis=1), distractor_slots, axis=2)
    choices = np.concatenate([answers[:, :, None], distractors], axis=2) + FIRST_VALUE
    answer_positions = np.arange(shot_end + 1, spec.episode_length, 2)
    return Episodes(tokens.astype(np.int32), answer_positions, choices.astype(np.int32))
