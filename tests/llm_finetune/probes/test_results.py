"""Asking a suite, recording answers with their checks, pass rates, and the release gate's comparison."""

from llm_finetune.probes.results import OVERALL, compare_runs, pass_rate_chart, pass_rates, rate_of, run_probes
from llm_finetune.probes.suite import ProbeSuite
from llm_finetune.recipes.base import ProbeSuiteSpec
from tests.probe_helpers import ScriptedChat

SUITE = ProbeSuite.model_validate({
    "name": "t", "system_prompt": "Be exact.",
    "prompts": [
        {"id": "list", "prompt": "List three fruits.", "checks": [{"type": "list_items", "count": 3},
                                                                   {"type": "lowercase"}],
         "examples": [{"prompt": "List two colours.", "answer": "- red\n- blue"}]},
        {"id": "short", "prompt": "Say hi in at most 3 words.", "checks": [{"type": "word_count", "max": 3}],
         "examples": [{"prompt": "Say bye in at most 2 words.", "answer": "bye now"}]},
    ]})
SPEC = ProbeSuiteSpec(variants=["zero_shot", "format_reminder"])


def good(prompt: str) -> str:
    return "- apple\n- cherry\n- plum" if prompt.startswith("List") else "hi there"


def shouty(prompt: str) -> str:  # right list, wrong case; too long unless reminded
    if prompt.startswith("List"):
        return "- Apple\n- Cherry\n- Plum"
    return "hi" if "Reminder" in prompt or "Use at most" in prompt else "hello there my friend"


def test_every_prompt_and_variant_is_asked_and_checked():
    model = ScriptedChat("good", good)
    run = run_probes(model, SUITE, SPEC)
    assert [(a.prompt_id, a.variant) for a in run.answers] == [
        ("list", "zero_shot"), ("list", "format_reminder"), ("short", "zero_shot"), ("short", "format_reminder")]
    assert len(model.calls) == 4 and model.calls[1][0]["content"].endswith("all.")  # the reminder was sent
    assert all(a.passed for a in run.answers) and run.answers[0].checks[0].detail == "3 list items; wanted exactly 3"


def test_pass_rates_per_check_type_variant_and_model():
    answers = run_probes(ScriptedChat("shouty", shouty), SUITE, SPEC).answers
    rates = {(r.variant, r.check_type): (r.passed, r.total) for r in pass_rates(answers)}
    assert rates[("zero_shot", "word_count")] == (0, 1)
    assert rates[("format_reminder", "word_count")] == (1, 1)
    assert rates[(OVERALL, "lowercase")] == (0, 2) and rates[(OVERALL, "list_items")] == (2, 2)
    assert rates[(OVERALL, OVERALL)] == (3, 6) and rate_of(pass_rates(answers)).rate == 0.5


def test_gate_rejects_a_regression_naming_the_newly_failing_checks():
    base = run_probes(ScriptedChat("base", good), SUITE, SPEC)
    tuned = run_probes(ScriptedChat("tuned", shouty), SUITE, SPEC)
    comparison = compare_runs(base, tuned, tolerance=0.1)
    assert comparison.regressed and (comparison.base_rate, comparison.finetuned_rate) == (1.0, 0.5)
    assert comparison.failures[0] == "pass rate 0.500 < base 1.000 - tolerance 0.100"
    assert comparison.failures[1].startswith("newly failing checks: list/zero_shot/lowercase (uppercase letters ACP)")
    assert "short/zero_shot/word_count (4 words; wanted at most 3 words)" in comparison.failures[1]
    assert len(comparison.newly_failing) == 3


def test_gate_accepts_a_model_that_does_not_regress_beyond_the_tolerance():
    base = run_probes(ScriptedChat("base", shouty), SUITE, SPEC)
    assert not compare_runs(base, run_probes(ScriptedChat("tuned", good), SUITE, SPEC), tolerance=0.0).regressed
    assert not compare_runs(base, base, tolerance=0.0).regressed
    tuned = run_probes(ScriptedChat("tuned", good), SUITE, SPEC)
    assert not compare_runs(tuned, base, tolerance=0.5).regressed  # a drop of exactly 0.5 is within 0.5


def test_per_check_type_holds_the_tolerance_for_each_type():
    def trade(prompt: str) -> str:  # lowercase now, but one list item short: overall equal to shouty's
        return "- apple\n- cherry" if prompt.startswith("List") else shouty(prompt)

    base, tuned = (run_probes(ScriptedChat(n, f), SUITE, SPEC) for n, f in (("base", shouty), ("tuned", trade)))
    assert not compare_runs(base, tuned, tolerance=0.0).regressed
    comparison = compare_runs(base, tuned, tolerance=0.0, per_check_type=True)
    assert comparison.failures[0] == "list_items pass rate 0.000 < base 1.000 - tolerance 0.000"


def test_chart_has_a_panel_per_model(tmp_path):
    from PIL import Image

    answers = [a for f in (good, shouty) for a in run_probes(ScriptedChat(f.__name__, f), SUITE, SPEC).answers]
    one = pass_rate_chart(pass_rates(answers[:4]), tmp_path / "one.png")
    two = pass_rate_chart(pass_rates(answers), tmp_path / "two.png")
    assert Image.open(two).height > Image.open(one).height
