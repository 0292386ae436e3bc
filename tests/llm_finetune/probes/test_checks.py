import pytest
from pydantic import TypeAdapter, ValidationError

from llm_finetune.probes.checks import CHECK_TYPES, Check

CHECK = TypeAdapter(Check)

# (check as written in a suite, an answer that follows it, an answer that does not, what the failure says)
CASES = [
    ({"type": "list_items", "count": 3}, "Here:\n- apple\n- cherry\n* strawberry", "- apple\n- cherry",
     "2 list items; wanted exactly 3"),
    ({"type": "list_items", "count": 2}, "**Steps**\n* wash\n- rinse", "1. wash\n2. rinse", "0 list items"),
    ({"type": "word_count", "max": 5}, "A rainbow is bent light.", "A rainbow is sunlight bent by raindrops.",
     "7 words; wanted at most 5 words"),
    ({"type": "word_count", "min": 4}, "Trains come and go.", "Busy station.", "2 words; wanted at least 4 words"),
    ({"type": "sentence_count", "min": 2, "max": 2}, "Air scatters blue light. So the sky is blue!",
     "Air scatters blue light.", "1 sentences; wanted exactly 2 sentences"),
    ({"type": "json_keys", "keys": ["city", "country"], "exact": True}, '{"city": "Tokyo", "country": "Japan"}',
     '{"city": "Tokyo", "country": "Japan", "population": 14}', "unexpected ['population']"),
    ({"type": "json_keys", "keys": ["title"]}, '```json\n{"title": "Emma", "author": "Austen"}\n```',
     "Title: Emma", "not valid JSON"),
    ({"type": "json_keys", "keys": ["title", "author"]}, '{"title": "Emma", "author": "Austen"}', '{"title": "Emma"}',
     "missing ['author']"),
    ({"type": "json_keys", "keys": ["a"]}, '{"a": 1}', "[1, 2]", "JSON list, not an object"),
    ({"type": "include_words", "words": ["tide", "salt"]}, "The Tide brings salt.", "The tides bring salty water.",
     "missing ['tide', 'salt']"),
    ({"type": "exclude_words", "words": ["fur", "pet"]}, "A furry friend, a petal-soft nose.", "Soft fur.",
     "contains ['fur']"),
    ({"type": "lowercase"}, "happy birthday, sam!", "Happy birthday, sam!", "uppercase letters H"),
    ({"type": "lowercase"}, "ok", "123 ...", "no cased letters"),
    ({"type": "ends_with", "phrase": "Sweet dreams."}, "Keep the room dark. sweet dreams.  ",
     "Sweet dreams. Keep the room dark.", "ends with"),
]


@pytest.mark.parametrize(("spec", "good", "bad", "why"), CASES,
                         ids=[f"{c[0]['type']}-{i}" for i, c in enumerate(CASES)])
def test_each_check_passes_a_good_answer_and_catches_a_bad_one(spec, good, bad, why):
    check = CHECK.validate_python(spec)
    passed, failed = check.evaluate(good), check.evaluate(bad)
    assert passed.passed and passed.type == spec["type"]
    assert not failed.passed and why in failed.detail


def test_every_check_type_is_covered_and_described():
    assert {c[0]["type"] for c in CASES} == set(CHECK_TYPES)
    for spec, *_ in CASES:
        assert CHECK.validate_python(spec).describe().endswith(".")  # the format reminder's sentence


def test_bad_check_specs_are_refused():
    for spec, message in [({"type": "word_count"}, "set 'min', 'max' or 'less_than'"),
                          ({"type": "word_count", "max": 5, "less_than": 5}, "set 'max' or 'less_than', not both"),
                          ({"type": "word_count", "min": 5, "max": 2}, "'min' is larger than 'max'"),
                          ({"type": "list_items", "count": 0}, "greater than 0"),
                          ({"type": "shouting"}, "does not match any of the expected tags"),
                          ({"type": "lowercase", "strict": True}, "Extra inputs are not permitted")]:
        with pytest.raises(ValidationError, match=message):
            CHECK.validate_python(spec)


# IFEval's own definitions (google-research instruction_following_eval: instructions.py, instructions_util.py):
# words are runs of \w, "less than" is strict, bullets are lines starting with '*' (not '**') or '-', a code fence
# around JSON may be ```json in any case, quotes around the answer are stripped before ends-with, a sentence splitter
# (punkt there) keeps abbreviations, and lowercase is str.islower.
IFEVAL_CASES = [
    ({"type": "word_count", "max": 5}, "It's a well-known fact.", False),  # It, s, a, well, known, fact
    ({"type": "word_count", "less_than": 5}, "one two three four five", False),
    ({"type": "word_count", "less_than": 5}, "one two three four", True),
    ({"type": "sentence_count", "less_than": 2}, "Dr. Smith went to the U.S. yesterday. He liked it.", False),
    ({"type": "sentence_count", "min": 2, "max": 2}, "Dr. Smith went to the U.S. yesterday. He liked it.", True),
    ({"type": "list_items", "count": 2}, "**Fruits**\n* apple\n- pear", True),
    ({"type": "list_items", "count": 2}, "1. apple\n2. pear", False),
    ({"type": "list_items", "count": 2}, "• apple\n• pear", False),
    ({"type": "json_keys", "keys": ["a"]}, '```JSON\n{"a": 1}\n```', True),
    ({"type": "json_keys", "keys": ["a"]}, '```Json\n{"a": 1}\n```', True),
    ({"type": "ends_with", "phrase": "Any other questions?"}, '"Read before bed. Any other questions?"', True),
    ({"type": "lowercase"}, "你好", False),  # no cased letter
]


@pytest.mark.parametrize(("spec", "answer", "passes"), IFEVAL_CASES,
                         ids=[f"{c[0]['type']}-{i}" for i, c in enumerate(IFEVAL_CASES)])
def test_checks_follow_ifeval_definitions(spec, answer, passes):
    assert CHECK.validate_python(spec).evaluate(answer).passed is passes


def test_less_than_is_described_and_bounded():
    check = CHECK.validate_python({"type": "word_count", "min": 2, "less_than": 5})
    assert check.describe() == "Use at least 2 and fewer than 5 words."
    assert check.evaluate("one two three four five").detail == "5 words; wanted at least 2 and fewer than 5 words"
    with pytest.raises(ValidationError, match="'min' must be smaller than 'less_than'"):
        CHECK.validate_python({"type": "sentence_count", "min": 3, "less_than": 3})
