"""Greedy (or sampled) generation with stop sequences, and exact match of an extracted answer.

Generation runs in batches through `emergence_jax.models.sampling.generate`, which decodes a fixed
number of new tokens; a completion is then cut at the end-of-sequence token and at the first stop
sequence (text, as in lm-eval-harness `until`). Prompts are sorted by length before batching so
rows in a batch need little padding. Too-long prompts lose tokens from the left so that prompt plus
`max_new_tokens` fits the model's context window. `generate_tokens` is the one batching loop, for
evaluation here and for PassUntil's sampler: on a mesh each batch splits over the data axes, so in
a multi-host job each host generates its share and the rows are gathered to every host.

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


def prompt_budget(max_length: int, max_new_tokens: int) -> int:
    """Tokens a prompt may keep so that it plus `max_new_tokens` fits the model's context."""
    if max_new_tokens >= max_length:
        raise UserError(f"--max-new-tokens {max_new_tokens} must be below the model's context of {max_length} tokens")
    return max_length - max_new_tokens


def encode_prompt(tokenizer, context: str, budget: int, *, add_bos: bool = True) -> list[int]:
    """Prompt token ids as generation feeds them: BOS (when `add_bos` and the tokenizer has one),
    then the context, losing tokens from the left to keep at most `budget` (`prompt_budget`)."""
    prefix = [tokenizer.bos_id] if add_bos and tokenizer.bos_id is not None else []
    return (prefix + list(tokenizer.encode(context)))[-budget:]


def generate_tokens(
    model,
    rows: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    batch_size: int,
    eos_id: int | None,
    pad_id: int | None,
    temperature: float = 0.0,
    key=None,
    mesh=None,
    progress: bool = False,
) -> list[list[int]]:
    """New tokens of each row of prompt ids, cut before the first `eos_id`; every host gets them all.

    Rows go to `generate` in consecutive batches of one size: `batch_size` rounded up to a multiple
    of the mesh's data-parallel size (`data` x `fsdp`), the last batch filled up with repeats of its
    last row. So `generate` compiles once per prompt-length bucket, and with a `mesh` (the model's)
    each batch splits evenly over the data axes: on a multi-host mesh each host generates only its
    share of the rows, which are then gathered to every host (`distributed.host_array`). Every
    process of a job must call this alike. Batch `i` samples (temperature > 0) with
    `jax.random.fold_in(key, i)`.
    """
    import contextlib

    import jax

    from emergence_jax.distributed import host_array
    from emergence_jax.evaluate.scoring import data_parallel_size
    from emergence_jax.models.sampling import generate

    parallel = 1 if mesh is None else data_parallel_size(mesh)
    size = -(-batch_size // parallel) * parallel
    pad = pad_id if pad_id is not None else 0
    tokens_out: list[list[int]] = []
    for index, start in enumerate(tqdm(range(0, len(rows), size), desc="generating", unit="batch", disable=not progress)):
        chunk = list(rows[start : start + size])
        filled = chunk + [chunk[-1]] * (size - len(chunk))
        with contextlib.nullcontext() if mesh is None else jax.set_mesh(mesh):
            new = generate(
                model, filled, max_new_tokens=max_new_tokens, temperature=temperature,
                rng=None if key is None else jax.random.fold_in(key, index), eos_id=eos_id, pad_id=pad,
            )
        for row in host_array(new)[: len(chunk)].tolist():
            tokens_out.append(row[: row.index(eos_id)] if eos_id is not None and eos_id in row else row)
    return tokens_out


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
    mesh=None,
    progress: bool = False,
) -> list[str]:
    """One completion per context (text after the context, cut at EOS and the first stop sequence).

    `temperature=0` is greedy; otherwise `rng` (a `jax.random` key) seeds sampling. With a `mesh`
    (the model's), batches split over its data axes and each host of a multi-host job generates
    its share (`generate_tokens`); every host returns all completions.
    """
    budget = prompt_budget(max_length, max_new_tokens)
    encoded = [encode_prompt(tokenizer, context, budget, add_bos=add_bos) for context in contexts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    new_tokens = generate_tokens(
        model, [encoded[i] for i in order], max_new_tokens=max_new_tokens, batch_size=batch_size, eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id, temperature=temperature, key=rng, mesh=mesh, progress=progress,
    )
    completions: list[str] = [""] * len(encoded)
    for index, tokens in zip(order, new_tokens, strict=True):
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
    mesh=None,
    progress: bool = False,
) -> list[GenerationOutcome]:
    """Greedy completions of every prompt, scored by exact match of the extracted answer. With a
    `mesh` (the model's), each host of a multi-host job generates its share of the batches."""
    completions = generate_completions(
        model, tokenizer, [p.context for p in prompts], [p.stop for p in prompts],
        max_new_tokens=max_new_tokens, max_length=max_length, batch_size=batch_size, add_bos=add_bos, mesh=mesh, progress=progress,
    )
    return score_exact_match(completions, prompts, extract_answer)


def summarize_generation(outcomes: Sequence[GenerationOutcome]) -> dict[str, float]:
    """`exact_match`: the fraction of prompts whose extracted answer equals the reference."""
    if not outcomes:
        raise UserError("no prompts to evaluate; check the task's data and --limit")
    return {"exact_match": float(np.mean([o.correct for o in outcomes]))}
