import pytest

from llm_finetune.data.answers import extract_final_answer, is_correct


@pytest.mark.parametrize("text, expected", [
    ("There are 40 apples, minus 2 eaten... so the answer is 42.", 42),
    ("Natalia sold 48 + 24 = 72 clips.\n#### 72", 72),
    ("First 3 then 5 #### 8 (and 9 spare)", 8),  # the marker wins over a later number
    ("The answer: $1,200", 1200),
    ("Each week $750, so in 4 weeks $3,000. The answer is $3,000.", 3000),
    ("It drops from 2 to -12 degrees. The answer is -12.", -12),
    ("The answer is \u22125.", -5),  # a typographic minus
    ("The final answer is **1,200.50**.", 1200.5),
    ("Answer = 7 apples, from 3 + 4", 7),  # the number after the cue, not the last one
    ("I think the answer is 12, wait, the answer is 13.", 13),  # the last cue
    ("Therefore \\boxed{256}.", 256),
    ("She has 3 apples, then 4 more, so 7 in all", 7),  # no cue: the last number
    ("From 3-4 hours", 4),  # a dash between numbers is not a sign
    ("version 1.2.3", 1.2),
])
def test_final_answer(text, expected):
    assert extract_final_answer(text) == expected


@pytest.mark.parametrize("text", ["", "I do not know.", "The answer is unknown.", "#### none"])
def test_no_number_is_none(text):
    assert extract_final_answer(text) is None


def test_correctness_allows_float_rounding_only():
    assert is_correct(1200.0, 1200) and is_correct(0.1 + 0.2, 0.3)
    assert not is_correct(1201.0, 1200) and not is_correct(None, 0) and not is_correct(-12, 12)
