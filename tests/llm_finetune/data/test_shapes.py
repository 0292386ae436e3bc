"""A new data type brings its own rules: a data class that names its module, a module with a SHAPE; nothing else
changes. A data class or model spec with none is refused by name."""

import json
from typing import ClassVar

import pytest

from llm_finetune.data.intake import FieldRule
from llm_finetune.data.shapes import DataShape, load_data
from llm_finetune.errors import DataValidationError, RecordProblem
from llm_finetune.models.base import base_model_path
from llm_finetune.recipes import DataSource
from llm_finetune.recipes.base import Strict


class NoteData(DataSource):
    shape_module: ClassVar[str] = __name__  # this test module is the data module: its SHAPE below


class _NoteShape(DataShape):
    def rules(self, data):
        return [FieldRule("note"), FieldRule("stars", types=(int,))]

    def check(self, validated, data):
        problems = [RecordProblem(data.train_uri, i, "stars", "at most 5")
                    for i, s in enumerate(validated.load("train")["stars"], 1) if s > 5]
        if problems:
            raise DataValidationError(problems)


SHAPE = _NoteShape()


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_a_new_data_type_is_checked_by_its_own_shape(tmp_path):
    good = write(tmp_path / "good.jsonl", [{"note": "fine", "stars": 4}])
    validated = load_data(NoteData(train_uri=good, validation_uri=good), tmp_path / "work")
    assert validated.num_records == {"train": 1, "validation": 1}

    bad = write(tmp_path / "bad.jsonl", [{"note": "fine", "stars": "four"}])
    with pytest.raises(DataValidationError, match=r"bad.jsonl.*line 1.*'stars'"):
        load_data(NoteData(train_uri=bad, validation_uri=good), tmp_path / "work")
    loud = write(tmp_path / "loud.jsonl", [{"note": "great", "stars": 9}])
    with pytest.raises(DataValidationError, match=r"loud.jsonl.*line 1.*at most 5"):
        load_data(NoteData(train_uri=loud, validation_uri=good), tmp_path / "work")


def test_a_data_type_without_a_shape_or_a_spec_without_a_builder_is_refused_by_name(tmp_path):
    class Shapeless(DataSource):
        pass

    with pytest.raises(TypeError, match="Shapeless names no shape_module"):
        load_data(Shapeless(train_uri="x.jsonl", validation_uri="x.jsonl"), tmp_path)

    class UnbuiltSpec(Strict):
        name_or_path: str | None = None

    with pytest.raises(TypeError, match="no base-model builder for UnbuiltSpec"):
        base_model_path(UnbuiltSpec(), NoteData(train_uri="x", validation_uri="x"), None, tmp_path)
