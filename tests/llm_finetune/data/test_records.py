import json

import pytest

from llm_finetune.data.records import read_text_records
from llm_finetune.errors import DataValidationError
from tests.conftest import DIALOGSUM

FIELDS = ["dialogue", "summary"]


def write(tmp_path, lines: list[str], name="train.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return path


def good(**extra) -> str:
    return json.dumps({"dialogue": "#Person1#: Hi.", "summary": "They greet.", **extra})


def test_real_dialogsum_sample_loads():
    records = read_text_records(DIALOGSUM / "train.jsonl", FIELDS)
    assert len(records) == 601
    assert records[0]["fname"] == "train_0"


def test_bad_json_line_named_by_file_and_line(tmp_path):
    path = write(tmp_path, [good(), '{"dialogue": "x", "summary": ', good()])
    with pytest.raises(DataValidationError) as err:
        read_text_records(path, FIELDS)
    (problem,) = err.value.problems
    assert (problem.path, problem.line, problem.field) == (str(path), 2, None)
    assert "invalid JSON" in str(err.value) and f"{path}, line 2" in str(err.value)


def test_missing_wrong_type_and_empty_fields_all_reported(tmp_path):
    path = write(tmp_path, [
        good(),
        json.dumps({"dialogue": "#Person1#: Hi."}),
        json.dumps({"dialogue": 42, "summary": "s"}),
        json.dumps({"dialogue": "d", "summary": "   "}),
        json.dumps(["not", "an", "object"]),
    ])
    with pytest.raises(DataValidationError) as err:
        read_text_records(path, FIELDS)
    found = {(p.line, p.field): p.message for p in err.value.problems}
    assert found == {
        (2, "summary"): "missing",
        (3, "dialogue"): "must be a string, got int",
        (4, "summary"): "is empty",
        (5, None): "expected a JSON object, got list",
    }
    assert f"{path}, line 2, field 'summary': missing" in str(err.value)


def test_empty_file_is_an_error(tmp_path):
    path = write(tmp_path, [])
    with pytest.raises(DataValidationError, match="no records"):
        read_text_records(path, FIELDS)


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path):
    path = write(tmp_path, [good(), "", json.dumps({"summary": "s"})])
    with pytest.raises(DataValidationError) as err:
        read_text_records(path, FIELDS)
    assert err.value.problems[0].line == 3


def test_missing_file(tmp_path):
    with pytest.raises(DataValidationError, match="file not found"):
        read_text_records(tmp_path / "nope.jsonl", FIELDS)


def test_label_replaces_path_in_errors(tmp_path):
    path = write(tmp_path, [json.dumps({"dialogue": "d"})])
    with pytest.raises(DataValidationError, match=r"s3://bucket/train.jsonl, line 1, field 'summary'"):
        read_text_records(path, FIELDS, label="s3://bucket/train.jsonl")
