"""Code completions count only when they add a statement to the function body and the program parses."""

import math

import pytest

from llm_finetune.data.raw_text import IN_DOMAIN
from llm_finetune.evaluation.pretraining import PretrainComparison, SetPerplexity, completion_eval

PROMPT = 'def add(a: int, b: int) -> int:\n    """Return a + b."""\n'
# (raw completion, does it count)
COMPLETIONS = [
    ("    return a + b\n", True),
    ("    total = a\n    total += b\n    return total\n\nprint(add(1, 2))\n", True),  # cut before print
    ("", False),  # empty: the prompt alone (signature + docstring) parses
    ("\n\n", False),
    ("class Garbage:\n    pass\n", False),  # cut at the next column-0 line: nothing added
    ("    pass\n", False),  # a placeholder, not a statement that does something
    ("    ...\n", False),
    ("    return a +\n", False),  # does not parse
    ("    $$ ^^ ??", False),
]


def test_empty_or_garbage_completions_fail():
    run = completion_eval("m", [PROMPT] * len(COMPLETIONS), [c for c, _ in COMPLETIONS])
    assert run.counted == [int(ok) for _, ok in COMPLETIONS]
    assert run.metrics()["body_parse_rate"] == pytest.approx(2 / len(COMPLETIONS))
    assert run.completions[1].endswith("return total")  # the program as scored, cut at the next top-level line


def test_mean_added_lines_counts_lines_of_completions_that_count():
    run = completion_eval("m", [PROMPT] * 3, ["    return a + b\n", "    t = a\n\n    t += b\n    return t\n",
                                              "    return a +\n    b\n"])
    assert run.added_lines == [1, 3, 0]  # blank lines not counted; a completion that does not parse adds none
    assert run.metrics()["mean_added_lines"] == pytest.approx(4 / 3)


def test_prompt_without_final_newline_counts_only_new_statements():
    prompt = "def double(x):\n    return"
    run = completion_eval("m", [prompt, prompt], [" x * 2\n", " x * 2\n    print(x)\n"])
    assert run.counted == [0, 1]  # finishing the prompt's own statement adds none


def test_release_evidence_carries_both_metrics_and_per_prompt_values():
    sets = {IN_DOMAIN: SetPerplexity(loss=1.0, perplexity=math.e, tokens=10, documents=2)}
    base = completion_eval("init", [PROMPT] * 2, ["", "    return a + b\n"])
    trained = completion_eval("trained", [PROMPT] * 2, ["    return a + b\n", "    s = a + b\n    return s\n"])
    evidence = PretrainComparison(base_label="random init", base=sets, trained=sets).with_completions(
        base, trained).evidence()
    assert (evidence.base_metrics["body_parse_rate"], evidence.finetuned_metrics["body_parse_rate"]) == (0.5, 1.0)
    assert evidence.finetuned_metrics["mean_added_lines"] == 1.5
    paired = evidence.per_record["body_parse_rate"]
    assert (paired.base, paired.finetuned) == ([0.0, 1.0], [1.0, 1.0])
