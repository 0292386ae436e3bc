"""Prompt suites: the shipped ones load and check, bad files are named by file, line and field, prompts render."""

import json

import pytest

from llm_finetune.data.answers import extract_final_answer
from llm_finetune.data.suites import COT_SYSTEM, generate_cot_problems, load_suite, suite_prompts
from llm_finetune.errors import DataValidationError
from llm_finetune.recipes import PromptSuiteSpec
from tests.chat_helpers import SUITES, write_lines


def spec(path, kind, **settings) -> PromptSuiteSpec:
    return PromptSuiteSpec(path=str(path), kind=kind, **settings)


def problems(path, kind, work_dir) -> list[str]:
    """The problems a suite file is refused with, as printed."""
    with pytest.raises(DataValidationError) as err:
        load_suite("s", spec(path, kind), work_dir)
    return [str(p) for p in err.value.problems]


@pytest.mark.parametrize("file, kind, records", [("chat.jsonl", "chat", 8), ("assistant.jsonl", "assistant", 6),
                                                 ("cot_arithmetic.jsonl", "cot", 27)])
def test_shipped_suites_load(tmp_path, file, kind, records):
    suite = load_suite("s", spec(SUITES / file, kind), tmp_path)
    assert len(suite.records) == records and suite.origins[1] == f"{SUITES / file}, line 2"


def test_shipped_cot_suite_is_the_generator_output_with_known_answers():
    lines = (SUITES / "cot_arithmetic.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == generate_cot_problems(27, examples=3, seed=0)
    records = generate_cot_problems(60, examples=0, seed=7)
    for r in records:  # every worked solution ends on the computed answer
        assert extract_final_answer(r["solution"]) == r["answer"], r
    assert any(r["answer"] < 0 for r in records) and any(r["answer"] >= 1000 for r in records)


def test_cot_prompts_in_every_style_and_route(tmp_path):
    suite = load_suite("s", spec(SUITES / "cot_arithmetic.jsonl", "cot"), tmp_path)
    chat = suite_prompts(suite, spec(SUITES / "cot_arithmetic.jsonl", "cot", max_records=2, few_shot=2))
    assert [(p.record_id, p.style) for p in chat] == [
        ("cot-004", "direct"), ("cot-004", "zero_shot_cot"), ("cot-004", "few_shot_cot"),
        ("cot-005", "direct"), ("cot-005", "zero_shot_cot"), ("cot-005", "few_shot_cot")]
    direct, zero, few = chat[:3]
    question = suite.records[3]["question"]
    assert direct.expected == suite.records[3]["answer"]
    assert [m["role"] for m in direct.messages] == ["system", "user"] and direct.messages[0]["content"] == COT_SYSTEM
    assert zero.messages[-1]["content"] == f"{question}\nLet's think step by step."
    assert [m["role"] for m in few.messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert few.messages[2]["content"] == suite.records[0]["solution"]  # worked examples come from use: example
    text = suite_prompts(suite, spec(SUITES / "cot_arithmetic.jsonl", "cot", route="inputs", max_records=1,
                                     styles=["few_shot_cot"], few_shot=1))
    assert text[0].messages is None and text[0].text == (
        f"Question: {suite.records[0]['question']}\nAnswer: {suite.records[0]['solution']}\n\n"
        f"Question: {question}\nAnswer:")


def test_bad_chat_suite_names_file_line_and_field(tmp_path):
    path = write_lines(
        tmp_path / "chat.jsonl",
        {"id": "a", "messages": [{"role": "user", "content": "Hi"}]},
        {"id": "b", "messages": [{"role": "bot", "content": "Hi"}]},
        {"id": "c", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "  "}]},
        {"messages": [{"role": "user", "content": "Hi"}]},
        {"id": "a", "messages": [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Again"}]},
        {"id": "f", "messages": [{"role": "user", "content": "Hi"}], "refrence": "Hello"},
    )
    assert problems(path, "chat", tmp_path) == [
        f"{path}, line 2, field 'messages[0].role': Input should be 'system', 'user' or 'assistant'",
        f"{path}, line 3, field 'messages[1].content': is empty",
        f"{path}, line 4, field 'id': missing",
        f"{path}, line 5, field 'messages': a chat record is one user turn, optionally after a system message; "
        "got roles ['user', 'user']",
        f"{path}, line 5, field 'id': duplicate of line 1",
        f"{path}, line 6, field 'refrence': Extra inputs are not permitted",
    ]


def test_assistant_suite_needs_system_prompt_and_user_last(tmp_path):
    ok = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
          {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]
    path = write_lines(tmp_path / "a.jsonl", {"id": "1", "messages": ok}, {"id": "2", "messages": ok[1:]},
                       {"id": "3", "messages": ok[:3]})
    found = problems(path, "assistant", tmp_path)
    assert [p.split(": ", 1)[0] for p in found] == [f"{path}, line 2, field 'messages'",
                                                    f"{path}, line 3, field 'messages'"]
    assert found[1].endswith("got roles ['system', 'user', 'assistant']")


def test_bad_cot_suite(tmp_path):
    path = write_lines(
        tmp_path / "cot.jsonl",
        {"id": 1, "question": "2 + 2?", "answer": "4"},  # a string, not a number
        {"id": 2, "question": "3 + 3?", "answer": 6, "use": "example", "solution": "3 + 3 = 5. The answer is 5."},
        {"id": 3, "question": "4 + 4?", "answer": 8, "use": "example"},
        {"id": 4, "question": "5 + 5?", "answer": 10, "use": "sample"},
    )
    assert problems(path, "cot", tmp_path) == [
        f"{path}, line 1, field 'answer': Input should be a valid number",
        f"{path}, line 2, field 'solution': ends on 5, but 'answer' is 6",
        f"{path}, line 3, field 'solution': missing: a worked example needs its solution",
        f"{path}, line 4, field 'use': Input should be 'test' or 'example'",
    ]


def test_cot_suite_needs_enough_worked_examples_and_a_test_record(tmp_path):
    example = {"id": "e", "question": "1 + 1?", "answer": 2, "use": "example", "solution": "The answer is 2."}
    path = write_lines(tmp_path / "cot.jsonl", example, {"id": "t", "question": "2 + 2?", "answer": 4})
    assert len(load_suite("s", spec(path, "cot", few_shot=1), tmp_path).records) == 2
    with pytest.raises(DataValidationError, match=r"few_shot_cot needs 3 records with use: example, the file has 1"):
        load_suite("s", spec(path, "cot", few_shot=3), tmp_path)
    load_suite("s", spec(path, "cot", few_shot=3, styles=["direct"]), tmp_path)  # no few-shot style: no examples needed
    only = write_lines(tmp_path / "only.jsonl", example)
    with pytest.raises(DataValidationError, match="no test records"):
        load_suite("s", spec(only, "cot", few_shot=1), tmp_path)


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(DataValidationError, match="file not found"):
        load_suite("s", spec(tmp_path / "none.jsonl", "chat"), tmp_path)
    path = write_lines(tmp_path / "broken.jsonl", '{"id": "a", "messages": [}')
    with pytest.raises(DataValidationError, match=rf"{path}, line 1: invalid JSON"):
        load_suite("s", spec(path, "chat"), tmp_path)
