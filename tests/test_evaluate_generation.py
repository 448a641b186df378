"""Stop sequences, GSM8K exact match and APPS program scoring, on fixed completions."""

from emergence_jax.data.gsm8k_answers import extract_gsm8k_answer
from emergence_jax.data.prompts import CodePrompt, GenerationPrompt
from emergence_jax.evaluate.generation import score_exact_match, summarize_generation, truncate_at_stop
from emergence_jax.evaluate.programs import program_from_completion, run_programs, summarize_programs


def test_truncate_at_the_earliest_stop_sequence():
    text = "x = 3\n\nQuestion: next\nAnswer: 4"
    assert truncate_at_stop(text, ("Question:", "\n\n")) == "x = 3"
    assert truncate_at_stop(text, ("Answer:",)) == "x = 3\n\nQuestion: next\n"
    assert truncate_at_stop(text, ()) == text
    assert truncate_at_stop(text, ("absent", "")) == text


def test_gsm8k_exact_match_compares_normalised_final_answers():
    prompts = [
        GenerationPrompt("Q1", "#### 1,234"),
        GenerationPrompt("Q2", "-7"),
        GenerationPrompt("Q3", "#### 2.5"),
        GenerationPrompt("Q4", "#### 18"),
        GenerationPrompt("Q5", "#### 3"),
    ]
    completions = [
        "She pays 1000 + 234 = 1234 dollars.\n#### $1,234",
        "The temperature drops to -7 degrees. The answer is -7.",
        "Half of 5 is 2.50, so #### 2.50",
        "16 + 3 = 19\n#### 19",
        "I do not know.",
    ]
    outcomes = score_exact_match(completions, prompts, extract_gsm8k_answer)
    assert [o.correct for o in outcomes] == [True, True, True, False, False]
    assert outcomes[3].extracted == "19" and outcomes[3].reference == "18"
    assert outcomes[4].extracted is None
    assert summarize_generation(outcomes) == {"exact_match": 0.6}


def test_program_is_taken_from_a_fenced_block_when_there_is_one():
    assert program_from_completion("Here:\n```python\nprint(1)\n```\nDone.") == "print(1)\n"
    assert program_from_completion("```\nprint(2)\n") == "print(2)\n"
    assert program_from_completion("print(3)\n") == "print(3)\n"


def test_apps_metrics_from_sandboxed_runs():
    prompt = CodePrompt("Add two numbers.", (("1 2\n", "3\n"), ("5 5\n", "10\n"), ("0 0\n", "0\n")))
    programs = [
        "a, b = map(int, input().split())\nprint(a + b)\n",  # all pass
        "a, b = map(int, input().split())\nprint(a * b if a == 0 else a + b if a < 5 else 10)\n",  # all pass
        "a, b = map(int, input().split())\nprint(a + b + (a == 5))\n",  # 2 of 3
        "while True:\n    pass\n",  # times out
    ]
    outcomes = run_programs(programs, [prompt] * 4, time_limit_s=1.0)
    assert [o.passed_all for o in outcomes] == [True, True, False, False]
    assert outcomes[2].fraction_passed == 2 / 3
    assert {r.reason for r in outcomes[3].results} == {"timeout"}
    summary = summarize_programs(outcomes)
    assert summary["strict_accuracy"] == 0.5
    assert abs(summary["test_case_accuracy"] - (1 + 1 + 2 / 3 + 0) / 4) < 1e-12
