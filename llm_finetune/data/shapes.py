"""Which record rules a recipe's data section implies: the one place that maps a data shape to its checks."""

from __future__ import annotations

from pathlib import Path

from llm_finetune.data.intake import FieldRule, ValidatedData, intake
from llm_finetune.recipes import DataSource, InstructionData, RawTextData, SummarizationData


def rules_for(data: DataSource) -> list[FieldRule]:
    if isinstance(data, InstructionData):
        from llm_finetune.data.instructions import instruction_rules

        return instruction_rules(data)
    if isinstance(data, RawTextData):
        from llm_finetune.data.raw_text import raw_text_rules

        return raw_text_rules(data)
    if isinstance(data, SummarizationData):
        from llm_finetune.data.summarization import summarization_rules

        return summarization_rules(data)
    raise TypeError(f"no record rules for {type(data).__name__}")


def load_data(data: DataSource, work_dir: str | Path, s3=None) -> ValidatedData:
    """Both splits through the shared intake layer, checked by the rules of the data's shape."""
    return intake({"train": data.train_uri, "validation": data.validation_uri}, rules_for(data), fmt=data.format,
                  work_dir=work_dir, s3=s3)
