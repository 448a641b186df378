"""Greedy (or sampled) generation with stop sequences, and exact match of an extracted answer.

Generation runs in batches through `emergence_jax.models.sampling.generate`, which decodes a fixed
number of new tokens; a completion is then cut at the end-of-sequence token and at the first stop
sequence (text, as in lm-eval-harness `until`). Prompts are sorted by length before batching so
rows in a batch need little padding. Too-long prompts lose tokens from the left so that prompt plus
`max_new_tokens` fits the model's context window.

GSM8K: the answer is extracted from the completion and compared with the reference by exact
string match after the same normalisation (`extract_answer` decides both).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from emergence_jax.data.prompts import GenerationPrompt
from emergence_jax.errors import UserError


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the earliest occurrence of any stop sequence."""
    cut = len(text)
    for sequence in stop:
        if sequence:
            found = text.find(sequence)
            if found != -1:
                cut = min(cut, found)
    return text[:cut]


def generate_completions(
    model,
    tokenizer,
    contexts: Sequence[str],
    stops: Sequence[Sequence[str]],
    *,
    max_new_tokens: int,
    max_length: int,
    batch_size: int = 8,
    add_bos: bool = True,
    temperature: float = 0.0,
    rng=None,
    progress: bool = False,
) -> list[str]:
    """One completion per context (text after the context, cut at EOS and the first stop sequence).

    `temperature=0` is greedy; otherwise `rng` (a `jax.random` key) seeds sampling, split per batch.
    """
    import jax

    from emergence_jax.distributed import host_array
    from emergence_jax.models.sampling import generate

    if max_new_tokens >= max_length:
        raise UserError(f"--max-new-tokens {max_new_tokens} must be below the model's context of {max_length} tokens")
    prefix = [tokenizer.bos_id] if add_bos and tokenizer.bos_id is not None else []
    budget = max_length - max_new_tokens
    encoded = [(prefix + list(tokenizer.encode(context)))[-budget:] for context in contexts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    completions: list[str] = [""] * len(encoded)
    for start in tqdm(range(0, len(order), batch_size), desc="generating", unit="batch", disable=not progress):
        indices = order[start : start + batch_size]
        batch_rng = None
        if temperature > 0.0:
            rng, batch_rng = jax.random.split(rng)
        new_tokens = host_array(  # the whole batch on every host, also when a multi-host mesh splits it
            generate(
                model,
                [encoded[i] for i in indices],
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                rng=batch_rng,
                eos_id=tokenizer.eos_id,
                pad_id=tokenizer.pad_id if tokenizer.pad_id is not None else 0,
            )
        )
        for row, index in zip(new_tokens, indices):
            tokens = row.tolist()
            if tokenizer.eos_id is not None and tokenizer.eos_id in tokens:
                tokens = tokens[: tokens.index(tokenizer.eos_id)]
            completions[index] = truncate_at_stop(tokenizer.decode(tokens), stops[index])
    return completions


@dataclasses.dataclass(frozen=True)
class GenerationOutcome:
    """A completion, the answer extracted from it (None if none was found) and whether it matches."""

    completion: str
    extracted: str | None
    reference: str
    correct: bool


def score_exact_match(
    completions: Sequence[str],
    prompts: Sequence[GenerationPrompt],
    extract_answer: Callable[[str], str | None],
) -> list[GenerationOutcome]:
    """Exact match of `extract_answer(completion)` with `extract_answer(reference)` (or the
    reference itself when extraction finds nothing in it, e.g. a bare number)."""
    outcomes = []
    for completion, prompt in zip(completions, prompts, strict=True):
        extracted = extract_answer(completion)
        reference = extract_answer(prompt.reference)
        reference = prompt.reference.strip() if reference is None else reference
        outcomes.append(GenerationOutcome(completion, extracted, reference, extracted is not None and extracted == reference))
    return outcomes


def evaluate_generation(
    model,
    tokenizer,
    prompts: Sequence[GenerationPrompt],
    *,
    extract_answer: Callable[[str], str | None],
    max_new_tokens: int,
    max_length: int,
    batch_size: int = 8,
    add_bos: bool = True,
    progress: bool = False,
) -> list[GenerationOutcome]:
    """Greedy completions of every prompt, scored by exact match of the extracted answer."""
    completions = generate_completions(
        model, tokenizer, [p.context for p in prompts], [p.stop for p in prompts],
        max_new_tokens=max_new_tokens, max_length=max_length, batch_size=batch_size, add_bos=add_bos, progress=progress,
    )
    return score_exact_match(completions, prompts, extract_answer)


def summarize_generation(outcomes: Sequence[GenerationOutcome]) -> dict[str, float]:
    """`exact_match`: the fraction of prompts whose extracted answer equals the reference."""
    if not outcomes:
        raise UserError("no prompts to evaluate; check the task's data and --limit")
    return {"exact_match": float(np.mean([o.correct for o in outcomes]))}
