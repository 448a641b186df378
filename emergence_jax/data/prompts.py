"""The rendered prompts that evaluation, finetuning and PassUntil consume.

Task builders (`emergence_jax.data.tasks`) turn dataset examples into these; the evaluation code
never needs to know which task a prompt came from.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class MultipleChoicePrompt:
    """Score each continuation by its log-likelihood after `context` (e.g. MMLU, CSQA, CoLA).

    `continuations[i]` is appended to `context` verbatim (include any leading space).
    """

    context: str
    continuations: tuple[str, ...]
    answer_index: int


@dataclasses.dataclass(frozen=True)
class GenerationPrompt:
    """Generate after `context` until a stop sequence; compare the extracted answer with `reference`
    (e.g. GSM8K: `reference` is the final number after `####`)."""

    context: str
    reference: str
    stop: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class CodePrompt:
    """Generate a program after `context`; it passes when it passes every test case (APPS).

    Each test case is (stdin text, expected stdout text).
    """

    context: str
    test_cases: tuple[tuple[str, str], ...]
    stop: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class FinetuneExample:
    """One supervised example: the loss is taken on `target` tokens only, never on `prompt`."""

    prompt: str
    target: str
