"""Text -> label data: intake rules, the label check (an unknown label names its record), class balance, and the
tokenization every classifier shares: long texts cut to max_length tokens at the head, the tail or both."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from llm_finetune.data.intake import FieldRule, ValidatedData
from llm_finetune.data.shapes import DataShape
from llm_finetune.errors import DataValidationError, RecordProblem
from llm_finetune.fingerprint import fingerprint, name_or_path_key
from llm_finetune.kinds import EndpointTestCase
from llm_finetune.recipes import ClassificationData

SPLITS = ("train", "validation")


def classification_rules(data: ClassificationData) -> list[FieldRule]:
    rules = [FieldRule(data.text_field), FieldRule(data.label_field)]
    if data.id_field:
        rules.append(FieldRule(data.id_field, types=(str, int), required=False))
    return rules


def check_labels(validated: ValidatedData, data: ClassificationData) -> None:
    """Raise one DataValidationError naming every record (file, line) whose label is not in the recipe's set."""
    known = set(data.labels)
    problems = []
    for split in SPLITS:
        for row, label in enumerate(validated.load(split)[data.label_field]):
            if label not in known:
                path, number, unit = validated.sources[split].rows(row)
                problems.append(RecordProblem(path, number, data.label_field, (
                    f"unknown label {label!r}; the recipe's labels are {data.labels} (data.labels)"), unit=unit))
    if problems:
        raise DataValidationError(problems)


def class_balance(validated: ValidatedData, data: ClassificationData) -> dict[str, dict[str, int]]:
    """Records per label per split, in the recipe's label order (limits applied)."""
    limits = {"train": data.max_train_records, "validation": data.max_validation_records}
    balance = {}
    for split in SPLITS:
        counts = Counter(validated.load(split, limits[split])[data.label_field])
        balance[split] = {label: counts.get(label, 0) for label in data.labels}
    return balance


def label_ids(data: ClassificationData) -> tuple[dict[int, str], dict[str, int]]:
    id2label = dict(enumerate(data.labels))
    return id2label, {label: i for i, label in id2label.items()}


@dataclass(frozen=True)
class TruncationRule:
    """How a text's tokens are cut to max_length, saved with a trained model so serving cuts the same way."""

    max_length: int
    side: str = "head"
    head_fraction: float = 0.25

    @classmethod
    def of(cls, data: ClassificationData) -> TruncationRule:
        return cls(data.max_length, data.truncation, data.head_fraction)


class TextEncoder:
    """Tokenizes texts to at most max_length ids, special tokens included, keeping the head, tail or both.

    The tokenizer's own truncation keeps only one side; so texts are tokenized whole, cut, and then wrapped in the
    special tokens the tokenizer adds to a single text ([CLS] .. [SEP] for BERT, <s> for a Llama-style BPE, none for
    GPT-2), found once by tokenizing a sample with and without them.
    """

    def __init__(self, tokenizer, rule: TruncationRule):
        self.tokenizer, self.rule = tokenizer, rule
        sample = "x"
        bare = tokenizer(sample, add_special_tokens=False)["input_ids"]
        full = tokenizer(sample)["input_ids"]
        at = next(i for i in range(len(full) - len(bare) + 1) if full[i:i + len(bare)] == bare)
        self.prefix, self.suffix = full[:at], full[at + len(bare):]
        self.budget = rule.max_length - len(self.prefix) - len(self.suffix)
        if self.budget < 1:
            raise ValueError(f"max_length {rule.max_length} leaves no room for text after the special tokens")

    def cut(self, ids: list[int]) -> list[int]:
        if len(ids) <= self.budget:
            return ids
        if self.rule.side == "head":
            return ids[: self.budget]
        if self.rule.side == "tail":
            return ids[len(ids) - self.budget:]
        head = round(self.budget * self.rule.head_fraction)
        return ids[:head] + ids[len(ids) - (self.budget - head):]

    def encode(self, texts: list[str]) -> dict[str, list]:
        """{'input_ids', 'attention_mask', 'length', 'truncated'} per text; no padding (the collator pads)."""
        whole = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        ids = [self.prefix + self.cut(t) + self.suffix for t in whole]
        return {"input_ids": ids, "attention_mask": [[1] * len(i) for i in ids], "length": [len(i) for i in ids],
                "truncated": [len(t) > self.budget for t in whole]}


def classification_dataset(validated: ValidatedData, split: str, data: ClassificationData, tokenizer,
                           limit: int | None = None):
    """The split tokenized by TextEncoder with integer `labels`; row order kept."""
    _, label2id = label_ids(data)
    encoder = TextEncoder(tokenizer, TruncationRule.of(data))
    ds = validated.load(split, limit)

    def encode(batch: dict) -> dict:
        out = encoder.encode(batch[data.text_field])
        out["labels"] = [label2id[label] for label in batch[data.label_field]]
        return out

    key = fingerprint("classification-tokens-v1", validated.fingerprint, split, limit, data,
                      name_or_path_key(tokenizer.name_or_path) if tokenizer.name_or_path else len(tokenizer))
    return ds.map(encode, batched=True, remove_columns=ds.column_names, keep_in_memory=True, new_fingerprint=key)


def tokenizer_corpus(validated: ValidatedData, data: ClassificationData) -> list[str]:
    """Texts a tiny model's tokenizer is trained on: the training split's texts."""
    return list(validated.load("train", data.max_train_records)[data.text_field])


def classification_test_cases(validated: ValidatedData, data: ClassificationData, limit: int):
    """Validation texts and their labels, as endpoint test requests."""
    rows = validated.load("validation", limit).to_list()
    return [EndpointTestCase(id=str(r[data.id_field]) if data.id_field and r.get(data.id_field) is not None else str(i),
                             inputs=r[data.text_field], reference=r[data.label_field]) for i, r in enumerate(rows)]


class _ClassificationShape(DataShape):
    def rules(self, data):
        return classification_rules(data)

    def check(self, validated, data):
        check_labels(validated, data)

    def tokenizer_corpus(self, validated, data):
        return tokenizer_corpus(validated, data)


SHAPE = _ClassificationShape()
