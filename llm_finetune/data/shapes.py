"""What a recipe's data section implies, by its data type: record rules, cross-field checks, SFT examples, a tiny
tokenizer's corpus. Each data type names its module (`shape_module` on the recipe's data class), whose `SHAPE` (a
DataShape) knows its own rules: a new use case adds a data class and a module, and edits nothing here."""

from __future__ import annotations

import importlib
from pathlib import Path

from llm_finetune.data.intake import FieldRule, ValidatedData, intake
from llm_finetune.recipes import DataSource


class DataShape:
    """The rules of one data type; a shape overrides what applies to it."""

    def rules(self, data: DataSource) -> list[FieldRule]:
        raise NotImplementedError

    def check(self, validated: ValidatedData, data: DataSource) -> None:
        """Checks across fields of a record that field rules cannot express; DataValidationError naming records."""

    def sft_examples(self, validated: ValidatedData, split: str, data: DataSource, tokenizer, limit: int | None):
        raise TypeError(f"{type(data).__name__} records are not SFT examples")

    def tokenizer_corpus(self, validated: ValidatedData, data: DataSource) -> list[str]:
        raise TypeError(f"no tokenizer corpus for {type(data).__name__}")


def shape_of(data: DataSource) -> DataShape:
    if not type(data).shape_module:
        raise TypeError(f"{type(data).__name__} names no shape_module (a data module with a SHAPE)")
    return importlib.import_module(type(data).shape_module).SHAPE


def rules_for(data: DataSource) -> list[FieldRule]:
    return shape_of(data).rules(data)


def load_data(data: DataSource, work_dir: str | Path, s3=None) -> ValidatedData:
    """Both splits through the shared intake layer, checked by the rules of the data's shape."""
    validated = intake({"train": data.train_uri, "validation": data.validation_uri}, rules_for(data), fmt=data.format,
                       work_dir=work_dir, s3=s3)
    shape_of(data).check(validated, data)
    return validated


def sft_examples(validated: ValidatedData, split: str, data: DataSource, tokenizer, limit: int | None = None):
    """A split as the SFT trainer's prompt/completion dataset: chat messages (instructions) or strings (QA)."""
    return shape_of(data).sft_examples(validated, split, data, tokenizer, limit)


def tokenizer_corpus(validated: ValidatedData, data: DataSource) -> list[str]:
    """Texts of the training split a tiny model's tokenizer is trained on."""
    return shape_of(data).tokenizer_corpus(validated, data)
