"""Which record rules a recipe's data section implies: the one place that maps a data shape to its checks."""

from __future__ import annotations

from pathlib import Path

from llm_finetune.data.intake import FieldRule, ValidatedData, intake
from llm_finetune.recipes import ClassificationData, DataSource, InstructionData, QAData, RawTextData, SummarizationData


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
    if isinstance(data, ClassificationData):
        from llm_finetune.data.classification import classification_rules

        return classification_rules(data)
    if isinstance(data, QAData):
        from llm_finetune.data.qa import qa_rules

        return qa_rules(data)
    raise TypeError(f"no record rules for {type(data).__name__}")


def check_shape(validated: ValidatedData, data: DataSource) -> None:
    """Checks across fields of a record that field rules cannot express: a label outside the recipe's label set,
    an answer_start that does not point at its answer. Raises DataValidationError naming every such record."""
    if isinstance(data, ClassificationData):
        from llm_finetune.data.classification import check_labels

        check_labels(validated, data)
    elif isinstance(data, QAData):
        from llm_finetune.data.qa import check_answers

        check_answers(validated, data)


def load_data(data: DataSource, work_dir: str | Path, s3=None) -> ValidatedData:
    """Both splits through the shared intake layer, checked by the rules of the data's shape."""
    validated = intake({"train": data.train_uri, "validation": data.validation_uri}, rules_for(data), fmt=data.format,
                       work_dir=work_dir, s3=s3)
    check_shape(validated, data)
    return validated


def sft_examples(validated: ValidatedData, split: str, data: InstructionData | QAData, tokenizer,
                 limit: int | None = None):
    """A split as the SFT trainer's prompt/completion dataset: chat messages (instructions) or strings (QA)."""
    if isinstance(data, QAData):
        from llm_finetune.data.qa import qa_sft_examples

        return qa_sft_examples(validated, split, data, tokenizer, limit)
    from llm_finetune.data.instructions import instruction_dataset

    return instruction_dataset(validated, split, data, limit)


def tokenizer_corpus(validated: ValidatedData, data: DataSource) -> list[str]:
    """Texts of the training split a tiny model's tokenizer is trained on."""
    if isinstance(data, ClassificationData):
        from llm_finetune.data.classification import tokenizer_corpus as corpus
    elif isinstance(data, QAData):
        from llm_finetune.data.qa import tokenizer_corpus as corpus
    else:
        raise TypeError(f"no tokenizer corpus for {type(data).__name__}")
    return corpus(validated, data)
