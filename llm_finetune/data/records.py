"""Read JSONL records and report every bad one by file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

from llm_finetune.errors import DataValidationError, RecordProblem


def read_text_records(path: str | Path, required_fields: list[str], label: str | None = None) -> list[dict]:
    """Load a JSONL file whose `required_fields` must be non-empty strings.

    All problems in the file are collected and raised together as one DataValidationError.
    `label` is how the file is named in errors (e.g. the original S3 URI); defaults to the path.
    """
    path = Path(path)
    name = label or str(path)
    records: list[dict] = []
    problems: list[RecordProblem] = []
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise DataValidationError([RecordProblem(name, None, None, "file not found")]) from None
    with handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as e:
                problems.append(RecordProblem(name, line_no, None, f"invalid JSON ({e.msg}, column {e.colno})"))
                continue
            if not isinstance(record, dict):
                problems.append(RecordProblem(name, line_no, None, f"expected a JSON object, got {type(record).__name__}"))
                continue
            bad = False
            for field in required_fields:
                value = record.get(field)
                if field not in record:
                    problems.append(RecordProblem(name, line_no, field, "missing"))
                elif not isinstance(value, str):
                    problems.append(RecordProblem(name, line_no, field, f"must be a string, got {type(value).__name__}"))
                elif not value.strip():
                    problems.append(RecordProblem(name, line_no, field, "is empty"))
                else:
                    continue
                bad = True
            if not bad:
                records.append(record)
    if not records and not problems:
        problems.append(RecordProblem(name, None, None, "no records (file is empty)"))
    if problems:
        raise DataValidationError(problems)
    return records
