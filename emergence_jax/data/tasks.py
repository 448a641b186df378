"""The task registry: which data, split and format each task uses, and the two entry points that
evaluation and finetuning call.

`eval_prompts` renders a split's examples as few-shot prompts; `finetune_examples` draws `D`
training examples. Both read datasets prepared by `emergence_jax.data.builders.prepare_dataset`
under `data_dir` (a TFDS data directory), and both are deterministic in `seed`:

- Evaluation subset (`limit`): a seeded random subset, in published order; the subset for a
  smaller limit is inside the one for a larger limit.
- Shots: for each evaluated example its own seeded draw, without replacement, from the task's
  few-shot split, never containing the evaluated example itself; the draw depends only on
  (seed, the example's position in the split), not on `limit`. MMLU is the exception that the
  field standardised: its shots are the first `shots` dev questions of the same subject, in
  published order (Hendrycks et al.; lm-eval-harness), so `seed` does not change them.
- Finetuning subsets: the first `D` of one seeded permutation of the finetuning split, so the
  subset for a smaller `D` is a prefix of the one for a larger `D` (same seed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from emergence_jax.data import rendering
from emergence_jax.data.builders import load_split
from emergence_jax.data.prompts import CodePrompt, FinetuneExample, GenerationPrompt, MultipleChoicePrompt
from emergence_jax.errors import UserError

Prompt = MultipleChoicePrompt | GenerationPrompt | CodePrompt
Example = dict[str, Any]

# Independent random streams derived from one user seed.
_SUBSET_STREAM, _SHOT_STREAM, _FINETUNE_STREAM = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """One evaluation task.

    `chance` is the accuracy of random guessing; `default_shots` the in-context examples used in
    the literature we compare with (Snell et al. 2024: 5-shot MMLU, 6-shot CSQA).
    """

    name: str
    kind: Literal["multiple_choice", "generation", "code"]
    chance: float
    default_shots: int
    dataset: str = ""  # key of emergence_jax.data.builders.BUILDERS; the task name when empty
    eval_split: str = "test"
    fewshot_split: str = "train"
    finetune_split: str = "train"

    @property
    def dataset_name(self) -> str:
        return self.dataset or self.name


TASKS: dict[str, TaskSpec] = {
    "mmlu": TaskSpec("mmlu", "multiple_choice", 0.25, 5, eval_split="test", fewshot_split="dev", finetune_split="auxiliary_train"),
    "gsm8k": TaskSpec("gsm8k", "generation", 0.0, 5, eval_split="test"),
    "commonsense_qa": TaskSpec("commonsense_qa", "multiple_choice", 0.2, 6, eval_split="validation"),
    "cola": TaskSpec("cola", "multiple_choice", 0.5, 5, eval_split="validation"),
    "apps": TaskSpec("apps", "code", 0.0, 0, eval_split="test"),
}


@dataclasses.dataclass(frozen=True)
class _Format:
    eval_prompt: Callable[[Example, Sequence[Example]], Prompt]
    finetune_example: Callable[[Example], FinetuneExample]
    evaluable: Callable[[Example], bool] = lambda example: True
    trainable: Callable[[Example], bool] = lambda example: True


_FORMATS: dict[str, _Format] = {
    "mmlu": _Format(rendering.mmlu_eval_prompt, rendering.mmlu_finetune_example),
    "gsm8k": _Format(rendering.gsm8k_eval_prompt, rendering.gsm8k_finetune_example),
    "commonsense_qa": _Format(rendering.commonsense_qa_eval_prompt, rendering.commonsense_qa_finetune_example),
    "cola": _Format(rendering.cola_eval_prompt, rendering.cola_finetune_example),
    # APPS: only standard-input problems with test cases are evaluated (CodePrompt carries stdin/stdout
    # pairs); only problems with a reference solution can be shots or finetuning targets.
    "apps": _Format(
        rendering.apps_eval_prompt,
        rendering.apps_finetune_example,
        evaluable=lambda example: bool(rendering.apps_stdin_test_cases(example)),
        trainable=lambda example: bool(example["solutions"]),
    ),
}


def task_spec(task: str) -> TaskSpec:
    if task not in TASKS:
        raise UserError(f"unknown task '{task}'; choose one of {', '.join(TASKS)}")
    return TASKS[task]


def _examples(spec: TaskSpec, data_dir: str, split: str) -> tuple[Example, ...]:
    return load_split(spec.dataset_name, data_dir=str(data_dir), split=split)


def _shot_pool(spec: TaskSpec, example: Example, pool: Sequence[Example]) -> list[Example]:
    candidates = [shot for shot in pool if shot["id"] != example["id"]]
    if spec.name == "mmlu":
        candidates = [shot for shot in candidates if shot["subject"] == example["subject"]]
    return candidates


def _draw_shots(spec: TaskSpec, candidates: list[Example], shots: int, rng: np.random.Generator) -> list[Example]:
    if spec.name == "mmlu":
        return candidates[:shots]
    return [candidates[i] for i in rng.choice(len(candidates), size=shots, replace=False)]


def eval_prompts(
    task: str, *, data_dir: str, split: str | None = None, shots: int, seed: int, limit: int | None = None
) -> list[Prompt]:
    """Few-shot prompts for the examples of `split` (default: the task's `eval_split`), all of
    them or a seeded subset of `limit`."""
    spec = task_spec(task)
    split = split or spec.eval_split
    task_format = _FORMATS[spec.name]
    if shots < 0:
        raise UserError(f"shots must be >= 0, got {shots}")
    examples = [(position, example) for position, example in enumerate(_examples(spec, data_dir, split)) if task_format.evaluable(example)]
    if limit is not None:
        if limit <= 0:
            raise UserError(f"limit must be positive, got {limit}")
        chosen = np.random.default_rng([seed, _SUBSET_STREAM]).permutation(len(examples))[:limit]
        examples = [examples[i] for i in sorted(chosen)]
    pool = [shot for shot in _examples(spec, data_dir, spec.fewshot_split) if task_format.trainable(shot)] if shots else []
    prompts = []
    for position, example in examples:
        candidates = _shot_pool(spec, example, pool)
        if len(candidates) < shots:
            raise UserError(
                f"{task}: only {len(candidates)} few-shot examples in split '{spec.fewshot_split}' for example "
                f"{example['id']}, {shots} asked; use --shots {len(candidates)} or fewer"
            )
        rng = np.random.default_rng([seed, _SHOT_STREAM, position])
        prompts.append(task_format.eval_prompt(example, _draw_shots(spec, candidates, shots, rng)))
    return prompts


def finetune_examples(task: str, *, data_dir: str, num_examples: int, seed: int) -> list[FinetuneExample]:
    """`num_examples` (D) rendered training examples; nested in D for a fixed seed."""
    spec = task_spec(task)
    task_format = _FORMATS[spec.name]
    pool = [example for example in _examples(spec, data_dir, spec.finetune_split) if task_format.trainable(example)]
    if not 0 < num_examples <= len(pool):
        raise UserError(f"{task}: num_examples must be in 1..{len(pool)} (the size of split '{spec.finetune_split}'), got {num_examples}")
    order = np.random.default_rng([seed, _FINETUNE_STREAM]).permutation(len(pool))[:num_examples]
    return [task_format.finetune_example(pool[i]) for i in order]
