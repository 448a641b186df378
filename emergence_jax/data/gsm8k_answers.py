"""Final-answer extraction for GSM8K generations, so exact match compares numbers, not strings.

A generation is read in the order the field uses: the `#### N` line GSM8K solutions end with
(lm-eval-harness "strict-match"), else "The answer is N" (chain-of-thought prompts, Wei et al.
2022), else the last number in the text (harness "flexible-extract"). Numbers are normalised so
"$1,234.50", "1234.5" and "1234.50" compare equal.
"""

from __future__ import annotations

import decimal
import re

# A number as people write it: optional minus and dollar sign in either order, thousands
# separated by commas ("1,234,567") or not, optional decimals, or a bare ".5". Not preceded by a
# letter, digit or dot, so "x2" and the "5" of "3.5" are not numbers of their own.
_NUMBER = re.compile(r"(?<![\w.])-?\$?-?\s?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)")
_FINAL_ANSWER = re.compile(r"####\s*(.*)")
_THE_ANSWER_IS = re.compile(r"the (?:final )?answer is\b[:\s]*(.*)", re.IGNORECASE)


def normalize_number(text: str) -> str | None:
    """Canonical decimal form of a written number, or None if `text` is not one.

    Drops "$", "%", thousands commas, spaces and a trailing full stop; removes insignificant zeros
    ("3.50" -> "3.5", "3.0" -> "3", "007" -> "7"); "-0" -> "0"; never uses exponent notation.
    """
    cleaned = text.strip().replace("$", "").replace(",", "").replace("%", "").replace(" ", "").rstrip(".")
    try:
        value = decimal.Decimal(cleaned)
    except decimal.InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def _first_number(text: str) -> str | None:
    match = _NUMBER.search(text)
    return normalize_number(match.group()) if match else None


def extract_gsm8k_answer(text: str) -> str | None:
    """The normalised final answer in a GSM8K generation, or None if it contains no number."""
    final = _FINAL_ANSWER.search(text)
    if final and (answer := _first_number(final.group(1))) is not None:
        return answer
    stated = _THE_ANSWER_IS.search(text)
    if stated and (answer := _first_number(stated.group(1))) is not None:
        return answer
    numbers = _NUMBER.findall(text)
    return normalize_number(numbers[-1]) if numbers else None
