"""Code generation (APPS): generate a program per problem, run it against the problem's test cases
in the sandbox, and report the two APPS metrics.

- strict accuracy: the fraction of problems whose program passes every test case;
- test-case accuracy: the mean over problems of the fraction of its test cases passed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from emergence_jax.data.prompts import CodePrompt
from emergence_jax.errors import UserError
from emergence_jax.evaluate.generation import generate_completions
from emergence_jax.evaluate.sandbox import CaseResult, check_jail, run_test_cases

_FENCED_CODE = re.compile(r"```(?:python3?|py)?[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def program_from_completion(completion: str) -> str:
    """The program in a completion: the first fenced code block if there is one, else all of it."""
    fenced = _FENCED_CODE.search(completion)
    return fenced.group(1) if fenced else completion


@dataclasses.dataclass(frozen=True)
class ProgramOutcome:
    """A generated program and its test-case results (each passed, or why it failed)."""

    program: str
    results: tuple[CaseResult, ...]

    @property
    def passed_all(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def fraction_passed(self) -> float:
        return float(np.mean([r.passed for r in self.results])) if self.results else 0.0


def run_programs(
    programs: Sequence[str],
    prompts: Sequence[CodePrompt],
    *,
    time_limit_s: float = 4.0,
    memory_limit_mb: int = 512,
    progress: bool = False,
) -> list[ProgramOutcome]:
    """Run each program against its prompt's test cases, one sandboxed process per case."""
    outcomes = []
    for program, prompt in tqdm(list(zip(programs, prompts, strict=True)), desc="running programs", unit="program", disable=not progress):
        if not prompt.test_cases:
            raise UserError("a code prompt has no test cases; APPS problems without tests cannot be scored")
        results = run_test_cases(program, prompt.test_cases, time_limit_s=time_limit_s, memory_limit_mb=memory_limit_mb)
        outcomes.append(ProgramOutcome(program, tuple(results)))
    return outcomes


def evaluate_programs(
    model,
    tokenizer,
    prompts: Sequence[CodePrompt],
    *,
    max_new_tokens: int,
    max_length: int,
    batch_size: int = 8,
    add_bos: bool = True,
    time_limit_s: float = 4.0,
    memory_limit_mb: int = 512,
    mesh=None,
    progress: bool = False,
) -> list[ProgramOutcome]:
    """Greedy programs for every prompt, each run against its test cases in the sandbox. With a
    `mesh` (the model's), each host of a multi-host job generates its share of the batches."""
    check_jail()  # a machine that cannot jail programs fails here, before generating any
    completions = generate_completions(
        model, tokenizer, [p.context for p in prompts], [p.stop for p in prompts],
        max_new_tokens=max_new_tokens, max_length=max_length, batch_size=batch_size, add_bos=add_bos, mesh=mesh, progress=progress,
    )
    programs = [program_from_completion(c) for c in completions]
    return run_programs(programs, prompts, time_limit_s=time_limit_s, memory_limit_mb=memory_limit_mb, progress=progress)


def summarize_programs(outcomes: Sequence[ProgramOutcome]) -> dict[str, float]:
    """`strict_accuracy` (all cases pass) and `test_case_accuracy` (mean fraction of cases passed)."""
    if not outcomes:
        raise UserError("no prompts to evaluate; check the task's data and --limit")
    return {
        "strict_accuracy": float(np.mean([o.passed_all for o in outcomes])),
        "test_case_accuracy": float(np.mean([o.fraction_passed for o in outcomes])),
    }
