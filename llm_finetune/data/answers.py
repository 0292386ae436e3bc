"""Final numeric answers of chain-of-thought outputs, and whether they are right.

Read in this order, the first that matches wins:
  1. GSM8K's marker: the number after the last `####`;
  2. the number after the last answer cue: "the answer is 42", "Answer: $1,200", "final answer = -3", \\boxed{7};
  3. the last number anywhere in the text.
Numbers may carry a sign (-, U+2212), a currency sign ($, €, £), thousands commas and decimals; a sentence's full
stop is not a decimal point ("42." is 42). No number at all gives None.
"""

from __future__ import annotations

import re

_NUMBER = re.compile(
    r"(?<![\w.])"  # not the tail of a word or of a decimal ("3-4" is 3 and 4, "1.2.3" is 1.2)
    r"(?P<sign>[-\u2212])?[$€£]?(?P<sign2>[-\u2212])?"
    r"(?P<digits>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<fraction>\.\d+)?"
)
_MARKER = re.compile(r"####")
_CUE = re.compile(r"\banswer\b\s*(?:is|was|would be|will be|should be|=|:)?\s*:?|\\boxed\{", re.IGNORECASE)


def parse_number(match: re.Match) -> float:
    value = float(match["digits"].replace(",", "") + (match["fraction"] or ""))
    return -value if (match["sign"] or match["sign2"]) else value


def _numbers(text: str) -> list[float]:
    return [parse_number(m) for m in _NUMBER.finditer(text)]


def extract_final_answer(text: str) -> float | None:
    """The final numeric answer a model gave (see the module docstring), or None when it wrote no number."""
    for cue in (_MARKER, _CUE):
        found = list(cue.finditer(text))
        if found:
            after = _numbers(text[found[-1].end():])
            if after:
                return after[0]
    numbers = _numbers(text)
    return numbers[-1] if numbers else None


def is_correct(extracted: float | None, expected: float) -> bool:
    """Equal up to float rounding of the expected value's scale; no answer is wrong."""
    return extracted is not None and abs(extracted - expected) <= 1e-6 * max(1.0, abs(expected))
