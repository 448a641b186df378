"""The task registry: which data, split and format each task uses, and the two entry points that
evaluation and finetuning call.

`eval_prompts` renders a split's examples as few-shot prompts; `finetune_examples` draws `D`
training examples. Both read datasets prepared by `emergence_jax.data.builders.prepare_dataset`
under `data_dir` (a TFDS data directory; None = TFDS's default), and both are deterministic in
`seed`:

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
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from emergence_jax.data import rendering
from emergence_jax.data.builders import load_examples, load_split, split_size
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
    trainable: Callable[[Example], bool] | None = None  # None: every example can be a shot or a target

    @property
    def filters_training_examples(self) -> bool:
        return self.trainable is not None

    def usable_for_training(self, example: Example) -> bool:
        return self.trainable is None or self.trainable(example)


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


def _data_dir(data_dir: str | os.PathLike | None) -> str | None:
    """A hashable folder name for the cached readers; None = TFDS's default data folder."""
    return None if data_dir is None else os.fspath(data_dir)


def _examples(spec: TaskSpec, data_dir: str | os.PathLike | None, split: str) -> tuple[Example, ...]:
    return load_split(spec.dataset_name, data_dir=_data_dir(data_dir), split=split)


@dataclasses.dataclass(frozen=True)
class _ShotGroup:
    """Few-shot candidates that may go with one evaluated example, and where each id sits."""

    examples: list[Example]
    position_of: dict[str, int]


def _shot_groups(spec: TaskSpec, pool: Sequence[Example]) -> dict[str, _ShotGroup]:
    """Candidates grouped by what must match the evaluated example: the subject for MMLU, nothing
    for the other tasks (one group, key "")."""
    grouped: dict[str, list[Example]] = {}
    for shot in pool:
        grouped.setdefault(_group_key(spec, shot), []).append(shot)
    return {key: _ShotGroup(examples, {shot["id"]: i for i, shot in enumerate(examples)}) for key, examples in grouped.items()}


def _group_key(spec: TaskSpec, example: Example) -> str:
    return example["subject"] if spec.name == "mmlu" else ""


def _draw_shots(spec: TaskSpec, example: Example, group: _ShotGroup, shots: int, rng: np.random.Generator) -> list[Example]:
    """`shots` candidates other than `example`: a seeded draw, or for MMLU the first ones in order."""
    own = group.position_of.get(example["id"])
    available = len(group.examples) - (own is not None)
    if available < shots:
        raise UserError(
            f"{spec.name}: only {available} few-shot examples in split '{spec.fewshot_split}' for example "
            f"{example['id']}, {shots} asked; use --shots {available} or fewer"
        )
    if spec.name == "mmlu":
        return [shot for shot in group.examples if shot["id"] != example["id"]][:shots]
    drawn = rng.choice(available, size=shots, replace=False)
    if own is not None:  # skip the evaluated example: candidate indices at or past it move up by one
        drawn = drawn + (drawn >= own)
    return [group.examples[i] for i in drawn]


def eval_prompts(
    task: str, *, data_dir: str | os.PathLike | None, split: str | None = None, shots: int, seed: int, limit: int | None = None
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
    pool = [shot for shot in _examples(spec, data_dir, spec.fewshot_split) if task_format.usable_for_training(shot)] if shots else []
    groups = _shot_groups(spec, pool)
    no_candidates = _ShotGroup([], {})
    prompts = []
    for position, example in examples:
        rng = np.random.default_rng([seed, _SHOT_STREAM, position])
        chosen = _draw_shots(spec, example, groups.get(_group_key(spec, example), no_candidates), shots, rng)
        prompts.append(task_format.eval_prompt(example, chosen))
    return prompts


def finetune_examples(task: str, *, data_dir: str | os.PathLike | None, num_examples: int, seed: int) -> list[FinetuneExample]:
    """`num_examples` (D) rendered training examples; nested in D for a fixed seed."""
    spec = task_spec(task)
    task_format = _FORMATS[spec.name]
    if task_format.filters_training_examples:
        pool = [example for example in _examples(spec, data_dir, spec.finetune_split) if task_format.usable_for_training(example)]
        pool_size = len(pool)
    else:  # read only the D chosen examples (MMLU's auxiliary_train has ~100k)
        pool_size = split_size(spec.dataset_name, data_dir=_data_dir(data_dir), split=spec.finetune_split)
    if not 0 < num_examples <= pool_size:
        raise UserError(f"{task}: num_examples must be in 1..{pool_size} (the usable size of split '{spec.finetune_split}'), got {num_examples}")
    order = np.random.default_rng([seed, _FINETUNE_STREAM]).permutation(pool_size)[:num_examples]
    if task_format.filters_training_examples:
        chosen = [pool[i] for i in order]
    else:
        chosen = load_examples(spec.dataset_name, data_dir=_data_dir(data_dir), split=spec.finetune_split, indices=order)
    return [task_format.finetune_example(example) for example in chosen]
