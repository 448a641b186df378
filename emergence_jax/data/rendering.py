"""Few-shot prompt formats, one per task, as the field writes them, so accuracies compare with
published ones.

Every format follows the same pattern (lm-eval-harness): a rendered example is a `question` block
ending in "Answer:" (or "ANSWER:\n" for APPS); a solved shot is that block, the answer, and a
blank line; the evaluated example comes last, unsolved. Finetuning uses the zero-shot block as
`prompt` and the answer as `target`, so a finetuned model sees exactly the evaluation format.

- MMLU (Hendrycks et al. `evaluate.py`; harness `mmlu`): "The following are multiple choice
  questions (with answers) about {subject}.\\n\\n" once, then per question "{question}\\nA. ..\\nB.
  ..\\nC. ..\\nD. ..\\nAnswer:"; continuations " A" .. " D". (The original's subject has a doubled
  space, "about  abstract algebra"; we use one space, as the harness does.)
- CommonsenseQA (harness `commonsense_qa`): "Question: {question}\\nA. ..\\n...\\nE. ..\\nAnswer:";
  continuations " A" .. " E".
- CoLA (harness `cola`): "{sentence}\\nQuestion: Does this sentence make sense?\\nAnswer:";
  continuations (" no", " yes") with index = label, so " yes" means acceptable (label 1).
- GSM8K (harness `gsm8k`): "Question: {question}\\nAnswer:"; the target is " {solution}", the
  published worked solution ending in "#### N"; generation stops at a blank line or "Question:".
- APPS (Hendrycks et al. `generate_gpt_codes.py`): "\\nQUESTION:\\n{question}" + "\\n{starter code}"
  if any + "\\nUse Standard Input format" (or "Call-Based") + "\\nANSWER:\\n"; the target is the
  first reference solution.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from emergence_jax.data.builders.mmlu import SUBJECTS as MMLU_SUBJECTS
from emergence_jax.data.gsm8k_answers import normalize_number
from emergence_jax.data.prompts import CodePrompt, FinetuneExample, GenerationPrompt, MultipleChoicePrompt
from emergence_jax.errors import UserError

Example = dict[str, Any]
SHOT_SEPARATOR = "\n\n"
GSM8K_STOP = ("\n\n", "Question:", "</s>", "<|im_end|>")
APPS_STOP = ("\nQUESTION:",)
COLA_CONTINUATIONS = (" no", " yes")


def _lettered(question: str, choices: Sequence[str], prefix: str = "") -> str:
    lines = [f"{prefix}{question}"] + [f"{chr(ord('A') + i)}. {choice}" for i, choice in enumerate(choices)]
    return "\n".join(lines) + "\nAnswer:"


def _letters(count: int) -> tuple[str, ...]:
    return tuple(f" {chr(ord('A') + i)}" for i in range(count))


def _with_shots(header: str, solved_shots: Sequence[str], query: str) -> str:
    return header + "".join(shot + SHOT_SEPARATOR for shot in solved_shots) + query


def mmlu_header(subject: str) -> str:
    """The MMLU instruction line; finetuning questions from the auxiliary set (not an MMLU subject)
    get it without "about {subject}"."""
    if subject in MMLU_SUBJECTS:
        return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    return "The following are multiple choice questions (with answers).\n\n"


def mmlu_block(example: Example) -> str:
    return _lettered(example["question"], example["choices"])


def mmlu_eval_prompt(example: Example, shots: Sequence[Example]) -> MultipleChoicePrompt:
    solved = [mmlu_block(shot) + _letters(4)[shot["answer"]] for shot in shots]
    context = _with_shots(mmlu_header(example["subject"]), solved, mmlu_block(example))
    return MultipleChoicePrompt(context=context, continuations=_letters(4), answer_index=example["answer"])


def mmlu_finetune_example(example: Example) -> FinetuneExample:
    return FinetuneExample(prompt=mmlu_header(example["subject"]) + mmlu_block(example), target=_letters(4)[example["answer"]])


def commonsense_qa_block(example: Example) -> str:
    return _lettered(example["question"].strip(), example["choices"], prefix="Question: ")


def commonsense_qa_eval_prompt(example: Example, shots: Sequence[Example]) -> MultipleChoicePrompt:
    solved = [commonsense_qa_block(shot) + _letters(5)[shot["answer"]] for shot in shots]
    context = _with_shots("", solved, commonsense_qa_block(example))
    return MultipleChoicePrompt(context=context, continuations=_letters(5), answer_index=example["answer"])


def commonsense_qa_finetune_example(example: Example) -> FinetuneExample:
    return FinetuneExample(prompt=commonsense_qa_block(example), target=_letters(5)[example["answer"]])


def cola_block(example: Example) -> str:
    return f"{example['sentence']}\nQuestion: Does this sentence make sense?\nAnswer:"


def cola_eval_prompt(example: Example, shots: Sequence[Example]) -> MultipleChoicePrompt:
    solved = [cola_block(shot) + COLA_CONTINUATIONS[shot["label"]] for shot in shots]
    context = _with_shots("", solved, cola_block(example))
    return MultipleChoicePrompt(context=context, continuations=COLA_CONTINUATIONS, answer_index=example["label"])


def cola_finetune_example(example: Example) -> FinetuneExample:
    return FinetuneExample(prompt=cola_block(example), target=COLA_CONTINUATIONS[example["label"]])


def gsm8k_block(example: Example) -> str:
    return f"Question: {example['question']}\nAnswer:"


def gsm8k_eval_prompt(example: Example, shots: Sequence[Example]) -> GenerationPrompt:
    solved = [f"{gsm8k_block(shot)} {shot['solution']}" for shot in shots]
    reference = normalize_number(example["answer"])
    if reference is None:
        raise UserError(f"GSM8K example {example['id']}: final answer {example['answer']!r} is not a number; rebuild from the original files")
    return GenerationPrompt(context=_with_shots("", solved, gsm8k_block(example)), reference=reference, stop=GSM8K_STOP)


def gsm8k_finetune_example(example: Example) -> FinetuneExample:
    return FinetuneExample(prompt=gsm8k_block(example), target=f" {example['solution']}")


def apps_test_io(example: Example) -> dict[str, Any]:
    """The parsed `input_output.json` of an APPS problem ({} when it has none)."""
    return json.loads(example["input_output"]) if example["input_output"] else {}


def apps_block(example: Example) -> str:
    starter = f"\n{example['starter_code']}" if example["starter_code"] else ""
    call_format = "Call-Based" if apps_test_io(example).get("fn_name") else "Standard Input"
    return f"\nQUESTION:\n{example['question']}{starter}\nUse {call_format} format\nANSWER:\n"


def _as_text(value: Any) -> str:
    """APPS stores some stdin/stdout cases as lists of lines; the reference harness joins them."""
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def apps_stdin_test_cases(example: Example) -> tuple[tuple[str, str], ...]:
    """(stdin, expected stdout) pairs; empty for call-based problems and problems without tests."""
    test_io = apps_test_io(example)
    if test_io.get("fn_name") or not test_io.get("inputs"):
        return ()
    return tuple((_as_text(given), _as_text(expected)) for given, expected in zip(test_io["inputs"], test_io["outputs"], strict=True))


def apps_eval_prompt(example: Example, shots: Sequence[Example]) -> CodePrompt:
    solved = [apps_block(shot) + shot["solutions"][0].rstrip("\n") for shot in shots]
    return CodePrompt(context=_with_shots("", solved, apps_block(example)), test_cases=apps_stdin_test_cases(example), stop=APPS_STOP)


def apps_finetune_example(example: Example) -> FinetuneExample:
    return FinetuneExample(prompt=apps_block(example), target=example["solutions"][0])
