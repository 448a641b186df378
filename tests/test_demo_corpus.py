"""The demo's synthetic world: episodes are fair multiple choice, finetuning pools are nested,
the corpus is seeded, and task documents need in-context recall."""

import numpy as np

from emergence_jax.demo.analysis import chance_z, pre_emergence_models
from emergence_jax.demo.corpus import FIRST_KEY, FIRST_VALUE, NUM_KEYS, WorldSpec, corpus_sequences, episodes, transition_matrix


def test_episode_choices_are_values_shown_exactly_once():
    spec = WorldSpec()
    ep = episodes(spec, 200, purpose="eval", seed=3)
    shot_end = 1 + 2 * spec.shots
    for tokens, choices in zip(ep.tokens, ep.choices):
        shown = dict(zip(tokens[1:shot_end:2], tokens[2:shot_end:2]))
        assert len(shown) == spec.shots and len(set(shown.values())) == spec.shots
        queried_keys = tokens[shot_end::2]
        answers = tokens[ep.answer_positions]
        assert all(shown[k] == a for k, a in zip(queried_keys, answers))
        for query_choices, answer in zip(choices, answers):
            assert query_choices[0] == answer and len(set(query_choices)) == 4
            distractors = set(query_choices[1:])
            # distractors are shot values that are never queried, so each appears once in the episode
            assert distractors <= set(shown.values()) - set(answers)
            assert all(np.sum(tokens == d) == 1 for d in distractors)


def test_finetuning_pools_are_nested_and_seeded():
    spec = WorldSpec()
    small = episodes(spec, 50, purpose="finetune", seed=1)
    large = episodes(spec, 400, purpose="finetune", seed=1)
    other = episodes(spec, 50, purpose="finetune", seed=2)
    np.testing.assert_array_equal(small.tokens, large.tokens[:50])
    assert not np.array_equal(small.tokens, other.tokens)
    np.testing.assert_array_equal(corpus_sequences(spec, 64, 7), corpus_sequences(spec, 64, 7))


def test_task_documents_repeat_keys_with_consistent_values_and_background_is_markov():
    spec = WorldSpec(task_fraction=0.5)
    seqs = corpus_sequences(spec, 4000, 11)
    is_task = seqs[:, 1] >= FIRST_KEY
    assert 0.45 < is_task.mean() < 0.55
    repeats = 0
    for doc in seqs[is_task][:200]:
        keys, values = doc[1::2], doc[2::2]
        assert keys.min() >= FIRST_KEY and keys.max() < FIRST_KEY + NUM_KEYS and values.min() >= FIRST_VALUE
        for k in np.unique(keys):
            assert np.unique(values[keys == k]).size == 1
        repeats += keys.size - np.unique(keys).size
    assert repeats > 200 * 8  # most pairs repeat an earlier key: recall is what predicts them
    background = seqs[~is_task][:, 1:] - 1
    counts = np.zeros((64, 64))
    np.add.at(counts, (background[:, :-1].ravel(), background[:, 1:].ravel()), 1)
    rows = counts.sum(1) > 200
    empirical = counts[rows] / counts[rows].sum(1, keepdims=True)
    assert np.abs(empirical - transition_matrix(spec)[rows]).max() < 0.12


def test_pre_emergence_models_stop_at_the_first_checkpoint_above_chance():
    """Above chance = the model-free truth's rule (>= 3 SE and >= 5% of 1 - chance); strongest first."""
    n = 4000
    se = np.sqrt(0.25 * 0.75 / n)
    whole = lambda accuracy: round(accuracy * n) / n
    rows = [
        {"model": "a", "pretrain_loss": 2.70, "accuracy": 0.25, "chance": 0.25, "n_eval": n, "train_examples": 0},
        {"model": "b", "pretrain_loss": 2.65, "accuracy": whole(0.25 + 2.5 * se), "chance": 0.25, "n_eval": n, "train_examples": 0},
        {"model": "c", "pretrain_loss": 2.62, "accuracy": whole(0.25 + 4.0 * se), "chance": 0.25, "n_eval": n, "train_examples": 0},  # 4 SE but only 0.027 above
        {"model": "d", "pretrain_loss": 2.60, "accuracy": 0.30, "chance": 0.25, "n_eval": n, "train_examples": 0},
        {"model": "e", "pretrain_loss": 2.55, "accuracy": 0.25, "chance": 0.25, "n_eval": n, "train_examples": 0},
        {"model": "f", "pretrain_loss": 2.50, "accuracy": 0.9, "chance": 0.25, "n_eval": n, "train_examples": 0},
    ]
    assert pre_emergence_models(rows) == ["c", "b", "a"]
    assert abs(chance_z(0.25 + 2 * se, 0.25, n) - 2.0) < 1e-9
