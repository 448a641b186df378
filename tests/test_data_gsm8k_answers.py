"""GSM8K final-answer extraction and number normalisation on tricky generations."""

from __future__ import annotations

import pytest

from emergence_jax.data.gsm8k_answers import extract_gsm8k_answer, normalize_number


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1,234", "1234"),
        ("$1,234.50", "1234.5"),
        ("3.50", "3.5"),
        ("3.5", "3.5"),
        ("3.0", "3"),
        ("007", "7"),
        ("-0", "0"),
        ("-12", "-12"),
        ("72.", "72"),
        ("25%", "25"),
        ("1000000", "1000000"),
        ("seven", None),
        ("", None),
        ("nan", None),
    ],
)
def test_normalize_number(text, expected):
    assert normalize_number(text) == expected


@pytest.mark.parametrize(
    "generation,expected",
    [
        # The `#### N` line wins, even when more numbers follow it.
        (" Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72\n\nQuestion: she has 5 more", "72"),
        ("So the total is 1,234 + 0 = 1,234.\n#### 1,234", "1234"),
        ("The temperature is 5 - 12 = -7 degrees.\n#### -7", "-7"),
        ("#### $18.00 dollars per day", "18"),
        ("#### 3.50", "3.5"),
        ("It costs 3.5 dollars.\n####3.50", "3.5"),
        # "The answer is N" (chain-of-thought style), with trailing text and punctuation.
        ("He buys 2 more, so 5 + 2 = 7. The answer is 7.", "7"),
        ("the answer is: $1,000. I hope that helps with your 2 questions", "1000"),
        ("So the final answer is -3.0 degrees.", "-3"),
        # Fallback: the last number in the text.
        ("She has 5 apples and 7 pears, so 12 fruits in total.", "12"),
        ("Each costs $0.25, so 8 cost $2.00.", "2"),
        ("x2 items at 3.5.", "3.5"),
        # "####" without a number falls through to the other rules.
        ("#### unknown, but 4 boxes", "4"),
        ("I don't know.", None),
    ],
)
def test_extract_gsm8k_answer(generation, expected):
    assert extract_gsm8k_answer(generation) == expected


def test_reference_and_extracted_answers_compare_equal_across_notations():
    assert extract_gsm8k_answer("#### 1,264,500") == normalize_number("1264500")
    assert extract_gsm8k_answer("The answer is $70,000.") == normalize_number("70000")
    assert extract_gsm8k_answer("#### 990.00") == normalize_number("990")
