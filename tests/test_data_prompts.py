"""Few-shot rendering, k-shot sampling and nested finetuning subsets on fixture datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from emergence_jax.data.builders import load_split, prepare_dataset
from emergence_jax.data.prompts import CodePrompt, GenerationPrompt, MultipleChoicePrompt
from emergence_jax.data.tasks import TASKS, eval_prompts, finetune_examples
from emergence_jax.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures" / "data"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("tfds")
    for dataset in ("mmlu", "gsm8k", "commonsense_qa", "cola", "apps"):
        prepare_dataset(dataset, data_dir=root, manual_dir=FIXTURES / dataset)
    return str(root)


def test_registry_kinds_and_chance_levels():
    assert {name: (spec.kind, spec.chance) for name, spec in TASKS.items()} == {
        "mmlu": ("multiple_choice", 0.25),
        "gsm8k": ("generation", 0.0),
        "commonsense_qa": ("multiple_choice", 0.2),
        "cola": ("multiple_choice", 0.5),
        "apps": ("code", 0.0),
    }
    assert TASKS["mmlu"].default_shots == 5 and TASKS["commonsense_qa"].default_shots == 6


def test_mmlu_prompt_is_the_hendrycks_format(data_dir):
    prompts = eval_prompts("mmlu", data_dir=data_dir, split="test", shots=1, seed=0)
    anatomy = prompts[3]  # test order: abstract_algebra (3 questions), then anatomy
    assert anatomy.context == (
        "The following are multiple choice questions (with answers) about anatomy.\n\n"
        "What is the embryological origin of the hyoid bone?\n"
        "A. The first pharyngeal arch\nB. The first and second pharyngeal arches\n"
        "C. The second pharyngeal arch\nD. The second and third pharyngeal arches\nAnswer: D\n\n"
        "A lesion causing compression of the facial nerve at the stylomastoid foramen will cause ipsilateral\n"
        "A. paralysis of the facial muscles.\nB. paralysis of the facial muscles and loss of taste.\n"
        "C. paralysis of the facial muscles, loss of taste and lacrimation.\n"
        "D. paralysis of the facial muscles, loss of taste, lacrimation and decreased salivation.\nAnswer:"
    )
    assert anatomy.continuations == (" A", " B", " C", " D") and anatomy.answer_index == 0
    assert [p.answer_index for p in prompts] == [1, 2, 3, 0, 1]


def test_mmlu_shots_are_the_subjects_dev_questions_in_order_for_every_seed(data_dir):
    dev = load_split("mmlu", data_dir=data_dir, split="dev")
    by_seed = [eval_prompts("mmlu", data_dir=data_dir, split="test", shots=5, seed=seed) for seed in (0, 1)]
    assert by_seed[0] == by_seed[1]
    for prompt, subject in zip(by_seed[0], ["abstract_algebra"] * 3 + ["anatomy"] * 2):
        own = [e["question"] for e in dev if e["subject"] == subject]
        other = [e["question"] for e in dev if e["subject"] != subject]
        positions = [prompt.context.index(question + "\nA.") for question in own]
        assert positions == sorted(positions)
        assert not any(question + "\nA." in prompt.context for question in other)
    with pytest.raises(UserError, match="only 4 few-shot examples"):
        eval_prompts("mmlu", data_dir=data_dir, split="dev", shots=5, seed=0)  # dev evaluated on itself


@pytest.mark.parametrize("task,split,key", [("gsm8k", "train", "question"), ("commonsense_qa", "train", "question"), ("cola", "train", "sentence")])
def test_shots_never_include_the_evaluated_example(data_dir, task, split, key):
    examples = load_split(task, data_dir=data_dir, split=split)
    prompts = eval_prompts(task, data_dir=data_dir, split=split, shots=len(examples) - 1, seed=3)
    for example, prompt in zip(examples, prompts, strict=True):
        assert prompt.context.count(example[key]) == 1  # only as the evaluated question, at the end
        assert all(other[key] in prompt.context for other in examples)
    with pytest.raises(UserError, match="few-shot examples"):
        eval_prompts(task, data_dir=data_dir, split=split, shots=len(examples), seed=3)


def test_shot_sampling_is_seeded_and_independent_of_limit(data_dir):
    full = eval_prompts("gsm8k", data_dir=data_dir, split="test", shots=3, seed=7)
    assert full == eval_prompts("gsm8k", data_dir=data_dir, split="test", shots=3, seed=7)
    assert full != eval_prompts("gsm8k", data_dir=data_dir, split="test", shots=3, seed=8)
    subsets = [eval_prompts("gsm8k", data_dir=data_dir, split="test", shots=3, seed=7, limit=n) for n in (1, 2, 3, 4)]
    for smaller, larger in zip(subsets, subsets[1:]):
        assert set(smaller) < set(larger)  # nested
    assert subsets[-1] == full and all(set(subset) <= set(full) for subset in subsets)


def test_gsm8k_prompt_reference_and_stops(data_dir):
    prompt = eval_prompts("gsm8k", data_dir=data_dir, split="test", shots=2, seed=0)[2]
    assert isinstance(prompt, GenerationPrompt)
    assert prompt.reference == "70000"
    assert prompt.context.endswith(
        "\n\nQuestion: Josh decides to try flipping a house.  He buys a house for $80,000 and then puts in $50,000 in "
        "repairs.  This increased the value of the house by 150%.  How much profit did he make?\nAnswer:"
    )
    assert prompt.context.startswith("Question: ") and prompt.context.count("\n#### ") == 2
    assert "Question:" in prompt.stop and "\n\n" in prompt.stop
    train_references = [p.reference for p in eval_prompts("gsm8k", data_dir=data_dir, split="train", shots=0, seed=0)]
    assert train_references[5:7] == ["1264500", "-7"]


def test_commonsense_qa_and_cola_formats(data_dir):
    csqa = eval_prompts("commonsense_qa", data_dir=data_dir, split="validation", shots=0, seed=0)[1]
    assert csqa == MultipleChoicePrompt(
        context="Question: What do people aim to do at work?\nA. complete job\nB. learn from each other\n"
        "C. kill animals\nD. wear hats\nE. talk to each other\nAnswer:",
        continuations=(" A", " B", " C", " D", " E"),
        answer_index=0,
    )
    cola = eval_prompts("cola", data_dir=data_dir, split="validation", shots=1, seed=0)
    assert [p.answer_index for p in cola] == [1, 1, 0, 0]  # label 1 (acceptable) -> " yes"
    assert cola[2].continuations == (" no", " yes")
    assert cola[2].context.endswith("\n\nThe car honked down the road.\nQuestion: Does this sentence make sense?\nAnswer:")
    labels = {e["sentence"]: e["label"] for e in load_split("cola", data_dir=data_dir, split="train")}
    for prompt in cola:
        sentence, rest = prompt.context.split("\n\n")[0].split("\n", 1)
        assert rest == "Question: Does this sentence make sense?\nAnswer:" + (" yes" if labels[sentence] else " no")


def test_apps_prompts_keep_standard_input_problems_with_their_test_cases(data_dir):
    prompts = eval_prompts("apps", data_dir=data_dir, split="test", shots=0, seed=0)
    assert [type(p) for p in prompts] == [CodePrompt, CodePrompt]  # the call-based test/0001 is left out
    assert prompts[0].context == (
        "\nQUESTION:\nGiven an integer n, print n squared.\n\n-----Input-----\n\nOne integer n.\n\n-----Output-----"
        "\n\nPrint n*n.\n\nUse Standard Input format\nANSWER:\n"
    )
    assert prompts[0].test_cases == (("4\n", "16\n"), ("-3\n", "9\n"), ("0\n", "0\n"))
    train = eval_prompts("apps", data_dir=data_dir, split="train", shots=1, seed=0)
    lists = [p for p in train if "largest" in p.context.rsplit("QUESTION:", 1)[1]][0]
    assert lists.test_cases == (("3\n1 5 2", "5"), ("1\n-4", "-4"))  # list-of-lines cases joined by newlines
    assert "\nANSWER:\n" in lists.context.split("\nQUESTION:\n")[1]  # the shot carries its solution


def test_finetuning_subsets_are_nested_and_seeded(data_dir):
    for task, size in [("gsm8k", 10), ("commonsense_qa", 8), ("cola", 10), ("mmlu", 8), ("apps", 3)]:
        subsets = [finetune_examples(task, data_dir=data_dir, num_examples=d, seed=11) for d in range(1, size + 1)]
        for smaller, larger in zip(subsets, subsets[1:]):
            assert larger[: len(smaller)] == smaller
        assert len(set(subsets[-1])) == size  # every example once
        assert subsets[-1] != finetune_examples(task, data_dir=data_dir, num_examples=size, seed=12)
        with pytest.raises(UserError, match="num_examples"):
            finetune_examples(task, data_dir=data_dir, num_examples=size + 1, seed=11)


def test_finetuning_examples_are_the_evaluation_format_with_the_answer_as_target(data_dir):
    by_prompt = {e.prompt: e.target for e in finetune_examples("cola", data_dir=data_dir, num_examples=10, seed=0)}
    assert by_prompt["They drank the pub.\nQuestion: Does this sentence make sense?\nAnswer:"] == " no"
    gsm8k = finetune_examples("gsm8k", data_dir=data_dir, num_examples=10, seed=0)
    assert all(e.prompt.startswith("Question: ") and e.prompt.endswith("\nAnswer:") for e in gsm8k)
    assert all(e.target.startswith(" ") and "\n#### " in e.target for e in gsm8k)
    mmlu = finetune_examples("mmlu", data_dir=data_dir, num_examples=8, seed=0)
    assert all(e.prompt.startswith("The following are multiple choice questions (with answers).\n\n") for e in mmlu)
    assert sorted(e.target for e in mmlu) == sorted([" A"] * 6 + [" D", " A"])
    apps = finetune_examples("apps", data_dir=data_dir, num_examples=3, seed=0)
    assert {e.prompt.rsplit("\nUse ", 1)[1] for e in apps} == {"Standard Input format\nANSWER:\n", "Call-Based format\nANSWER:\n"}
    assert all(e.target.strip() for e in apps)  # train/0003, without solutions, is never a target
