"""A synthetic finetuning task for tests and benchmarks, already tokenized.

Each prompt is random tokens; the target is a fixed random map applied to the prompt's last
`target_length` tokens. A model must look up the right positions to predict it, which a tiny
transformer learns in tens of steps; before training its accuracy is at chance (1 / vocab).
"""

from __future__ import annotations

import numpy as np

from emergence_jax.train.batches import TokenizedExample


def synthetic_examples(
    num_examples: int,
    *,
    vocab_size: int,
    prompt_length: int = 12,
    target_length: int = 2,
    seed: int = 0,
    task_seed: int = 1234,
) -> list[TokenizedExample]:
    """`num_examples` examples (token ids 3..vocab_size-1; 0-2 stay free for pad/bos/eos).

    `task_seed` fixes the map (the task); `seed` draws the prompts, so different seeds give
    disjoint-looking train and held-out sets of the same task.
    """
    low = 3
    mapping = np.random.default_rng(task_seed).integers(low, vocab_size, vocab_size)
    rng = np.random.default_rng(seed)
    prompts = rng.integers(low, vocab_size, (num_examples, prompt_length))
    return [
        TokenizedExample(tuple(int(t) for t in p), tuple(int(mapping[t]) for t in p[-target_length:]))
        for p in prompts
    ]
