"""Dialogue-summarization data: validated splits, prompts, and a tokenized, content-addressed cache."""

from __future__ import annotations

import shutil
from pathlib import Path

from pydantic import BaseModel

from llm_finetune.data.records import read_text_records
from llm_finetune.data.sources import fetch_jsonl
from llm_finetune.errors import DataValidationError
from llm_finetune.fingerprint import file_sha256, fingerprint, is_complete, mark_complete, name_or_path_key
from llm_finetune.recipes import SummarizationData


class ValidatedSplits(BaseModel):
    """Local copies of the train/validation files, checked record by record."""

    train_path: str
    validation_path: str
    train_sha256: str
    validation_sha256: str
    num_train: int
    num_validation: int


class PreparedDataset(BaseModel):
    """A tokenized DatasetDict on disk (splits 'train' and 'validation')."""

    path: str
    fingerprint: str
    num_train: int
    num_validation: int
    source_tokens: int
    target_tokens: int
    reused: bool


def build_prompt(template: str, dialogue: str) -> str:
    # str.replace, not str.format: dialogues may contain braces.
    return template.replace("{dialogue}", dialogue)


def _required(data: SummarizationData) -> list[str]:
    return [data.dialogue_field, data.summary_field]


def load_summarization_splits(data: SummarizationData, cache_dir: str | Path, s3=None) -> ValidatedSplits:
    """Fetch both splits and validate every record; all problems of both files are raised together."""
    problems, paths, counts = [], [], []
    for uri in (data.train_uri, data.validation_uri):
        try:
            path = fetch_jsonl(uri, cache_dir, s3=s3)
            counts.append(len(read_text_records(path, _required(data), label=uri)))
            paths.append(path)
        except DataValidationError as e:
            problems.extend(e.problems)
    if problems:
        raise DataValidationError(problems)
    return ValidatedSplits(
        train_path=str(paths[0]),
        validation_path=str(paths[1]),
        train_sha256=file_sha256(paths[0]),
        validation_sha256=file_sha256(paths[1]),
        num_train=counts[0],
        num_validation=counts[1],
    )


def read_split(path: str, data: SummarizationData, limit: int | None = None) -> list[dict]:
    """Records as {'id', 'dialogue', 'summary', 'prompt'}; the first `limit` only, if given."""
    rows = read_text_records(path, _required(data))[:limit]
    return [
        {
            "id": str(r.get(data.id_field, i)) if data.id_field else str(i),
            "dialogue": r[data.dialogue_field],
            "summary": r[data.summary_field],
            "prompt": build_prompt(data.prompt_template, r[data.dialogue_field]),
        }
        for i, r in enumerate(rows)
    ]


def prepare_summarization_dataset(
    data: SummarizationData, splits: ValidatedSplits, tokenizer_name_or_path: str, cache_root: str | Path
) -> PreparedDataset:
    """Tokenize prompts and summaries without padding (the collator pads each batch to its own longest record).

    The result is stored under cache_root/<fingerprint of file bytes, data settings and tokenizer>; a second call
    with the same inputs loads it instead of tokenizing again.
    """
    import datasets
    from transformers import AutoTokenizer

    key = fingerprint(
        "summarization-dataset-v1",
        splits.train_sha256,
        splits.validation_sha256,
        data,
        name_or_path_key(tokenizer_name_or_path, suffixes=(".json", ".model", ".txt")),  # tokenizer files only
    )
    out = Path(cache_root) / key
    if is_complete(out):
        return PreparedDataset.model_validate_json((out / "prepared.json").read_text()).model_copy(
            update={"reused": True}
        )
    if out.exists():
        shutil.rmtree(out)  # left by an interrupted run

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name_or_path)

    def tokenize(batch: dict) -> dict:
        enc = tokenizer(batch["prompt"], max_length=data.max_source_tokens, truncation=True)
        enc["labels"] = tokenizer(text_target=batch["summary"], max_length=data.max_target_tokens, truncation=True)[
            "input_ids"
        ]
        return enc

    splits_ds = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list(read_split(splits.train_path, data, data.max_train_records)),
            "validation": datasets.Dataset.from_list(
                read_split(splits.validation_path, data, data.max_validation_records)
            ),
        }
    )
    tokenized = splits_ds.map(tokenize, batched=True, desc="tokenize")
    out.mkdir(parents=True, exist_ok=True)
    tokenized.save_to_disk(str(out / "dataset"))
    prepared = PreparedDataset(
        path=str(out / "dataset"),
        fingerprint=key,
        num_train=len(tokenized["train"]),
        num_validation=len(tokenized["validation"]),
        source_tokens=sum(len(x) for x in tokenized["train"]["input_ids"]),
        target_tokens=sum(len(x) for x in tokenized["train"]["labels"]),
        reused=False,
    )
    (out / "prepared.json").write_text(prepared.model_dump_json(indent=2))
    mark_complete(out)
    return prepared
