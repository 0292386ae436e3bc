import pytest

from llm_finetune.errors import DataValidationError
from llm_finetune.probes.checks import CHECK_TYPES
from llm_finetune.probes.suite import conversation, load_suite
from llm_finetune.recipes.base import DEFAULT_SUITE

SUITE = """
name: test-suite
system_prompt: Follow the format.
reminder_prefix: "Reminder:"
prompts:
  - id: fruits
    prompt: Name three fruits as a list.
    checks: [{type: list_items, count: 3}, {type: lowercase}]
    examples:
      - {prompt: Name two colours as a list., answer: "- red\\n- blue"}
      - {prompt: Name one planet as a list., answer: "- mars"}
"""


def test_shipped_suite_loads_and_uses_every_check_type():
    suite = load_suite(DEFAULT_SUITE)
    assert len(suite.prompts) >= 12
    assert {c.type for p in suite.prompts for c in p.checks} == set(CHECK_TYPES)


def test_variants_are_built_from_one_prompt(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    suite = load_suite(path)
    prompt = suite.prompts[0]
    user = {"role": "user", "content": "Name three fruits as a list."}
    assert conversation(suite, prompt, "zero_shot") == [user]
    assert conversation(suite, prompt, "system_role") == [{"role": "system", "content": "Follow the format."}, user]
    assert conversation(suite, prompt, "few_shot") == [
        {"role": "user", "content": "Name two colours as a list."}, {"role": "assistant", "content": "- red\n- blue"},
        {"role": "user", "content": "Name one planet as a list."}, {"role": "assistant", "content": "- mars"},
        user,
    ]
    assert conversation(suite, prompt, "format_reminder") == [{"role": "user", "content": (
        "Name three fruits as a list.\n\nReminder: Answer with exactly 3 list items, one per line, each starting "
        "with '- '. Write your entire answer in lowercase letters; no capital letters at all.")}]


def test_every_bad_prompt_is_named_at_once(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE + """
  - id: no_checks
    prompt: Say hi.
    checks: []
    examples: [{prompt: Say bye., answer: bye}]
  - id: fruits
    prompt: Again.
    checks: [{type: list_items, count: -1}]
    examples: [{prompt: x, answer: y}]
  - id: fruits
    prompt: Once more.
    checks: [{type: lowercase}]
    examples: [{prompt: x, answer: y}]
""")
    with pytest.raises(DataValidationError) as err:
        load_suite(path)
    assert str(err.value).splitlines()[1:] == [
        f"  - {path}, prompt 2, field 'checks': List should have at least 1 item after validation, not 0 "
        "(id 'no_checks')",
        f"  - {path}, prompt 3, field 'checks.0.list_items.count': Input should be greater than 0 (id 'fruits')",
        f"  - {path}, prompt 4, field 'id': duplicate id 'fruits'",
    ]


def test_missing_or_shapeless_suite_files(tmp_path):
    with pytest.raises(DataValidationError, match="probe suite file not found"):
        load_suite(tmp_path / "none.yaml")
    (tmp_path / "list.yaml").write_text("- id: x\n")
    with pytest.raises(DataValidationError, match=r"field 'prompts': a suite is a mapping with a 'prompts' list"):
        load_suite(tmp_path / "list.yaml")
    (tmp_path / "top.yaml").write_text(SUITE.replace("system_prompt: Follow the format.\n", ""))
    with pytest.raises(DataValidationError, match=r"field 'system_prompt': Field required"):
        load_suite(tmp_path / "top.yaml")
