"""Dialogue-summarization data: validated splits, prompts, and a tokenized, content-addressed cache.

The preparation step also runs as a module, the same code locally and in a SageMaker Processing container:
    python -m llm_finetune.data.summarization --job job.json        (a PreparationJob; prints a PreparedDataset)
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel

from llm_finetune.data.intake import FieldRule, ValidatedData
from llm_finetune.data.shapes import DataShape
from llm_finetune.fingerprint import build_once, fingerprint, name_or_path_key
from llm_finetune.kinds import EndpointTestCase
from llm_finetune.recipes import SummarizationData


DATASET_DIR = "dataset"  # inside the cache folder named by the dataset's fingerprint


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


def summarization_rules(data: SummarizationData) -> list[FieldRule]:
    rules = [FieldRule(data.dialogue_field), FieldRule(data.summary_field)]
    if data.id_field:
        rules.append(FieldRule(data.id_field, types=(str, int), required=False))
    return rules


def summarization_records(validated: ValidatedData, split: str, data: SummarizationData,
                          limit: int | None = None) -> list[dict]:
    """Records as {'id', 'dialogue', 'summary', 'prompt'}; the first `limit` only, if given."""
    rows = validated.load(split, limit).to_list()
    return [
        {
            "id": str(r.get(data.id_field) if data.id_field and r.get(data.id_field) is not None else i),
            "dialogue": r[data.dialogue_field],
            "summary": r[data.summary_field],
            "prompt": build_prompt(data.prompt_template, r[data.dialogue_field]),
        }
        for i, r in enumerate(rows)
    ]


def summarization_test_cases(validated: ValidatedData, data: SummarizationData, limit: int) -> list[EndpointTestCase]:
    """Validation dialogues and their reference summaries, as endpoint test requests."""
    return [EndpointTestCase(id=r["id"], inputs=r["dialogue"], reference=r["summary"],
                             prompt=build_prompt(data.prompt_template, r["dialogue"]))
            for r in summarization_records(validated, "validation", data, limit)]


def summarization_dataset_key(data: SummarizationData, validated: ValidatedData, tokenizer_name_or_path: str) -> str:
    """Fingerprint of checked data, data settings and tokenizer files; where the step runs is not part of it."""
    return fingerprint(
        "summarization-dataset-v2",
        validated.fingerprint,
        data.model_dump(mode="json", exclude={"preparation_backend"}),
        name_or_path_key(tokenizer_name_or_path, suffixes=(".json", ".model", ".txt")),  # tokenizer files only
    )


def prepare_summarization_dataset(
    data: SummarizationData, validated: ValidatedData, tokenizer_name_or_path: str, cache_root: str | Path
) -> PreparedDataset:
    """Tokenize prompts and summaries without padding (the collator pads each batch to its own longest record).

    The result is stored under cache_root/<fingerprint of file bytes, data settings and tokenizer>; a second call
    with the same inputs loads it instead of tokenizing again.
    """

    key = summarization_dataset_key(data, validated, tokenizer_name_or_path)
    out = Path(cache_root) / key
    with build_once(out) as needed:
        if needed:
            prepared = _tokenize(data, validated, tokenizer_name_or_path, out, key)
            (out / "prepared.json").write_text(prepared.model_dump_json(indent=2))
            return prepared
    stored = PreparedDataset.model_validate_json((out / "prepared.json").read_text())
    return stored.model_copy(update={"reused": True, "path": str(out / DATASET_DIR)})  # where it is now (work_dirs move)


def _tokenize(data: SummarizationData, validated: ValidatedData, tokenizer_name_or_path: str, out: Path,
              key: str) -> PreparedDataset:
    import datasets
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name_or_path)

    def tokenize(batch: dict) -> dict:
        prompts = [build_prompt(data.prompt_template, d) for d in batch[data.dialogue_field]]
        enc = tokenizer(prompts, max_length=data.max_source_tokens, truncation=True)
        enc["labels"] = tokenizer(text_target=batch[data.summary_field], max_length=data.max_target_tokens,
                                  truncation=True)["input_ids"]
        return enc

    # Map over the checked, memory-mapped splits: an in-memory Dataset (from_list) is fingerprinted by pickling it
    # with dill, whose stdout capture Prefect's log_prints defeats, so bytecode disassembly ends up in the run log.
    # Our key already names every input, so datasets need not hash the tokenize closure either.
    limits = {"train": data.max_train_records, "validation": data.max_validation_records}
    tokenized = datasets.DatasetDict({
        name: (split := validated.load(name, limit)).map(
            tokenize, batched=True, remove_columns=split.column_names, new_fingerprint=f"{key}-{name}")
        for name, limit in limits.items()
    })
    tokenized.save_to_disk(str(out / DATASET_DIR))
    return PreparedDataset(
        path=str(out / DATASET_DIR),
        fingerprint=key,
        num_train=len(tokenized["train"]),
        num_validation=len(tokenized["validation"]),
        source_tokens=sum(len(x) for x in tokenized["train"]["input_ids"]),
        target_tokens=sum(len(x) for x in tokenized["train"]["labels"]),
        reused=False,
    )


class PreparationJob(BaseModel):
    """The preparation step as JSON, so it can cross a process or container boundary."""

    entry_module: ClassVar[str] = "llm_finetune.data.summarization"
    # Folders the step reads (container input name -> field) and the field naming the folder it writes.
    input_paths: ClassVar[dict[str, str]] = {"data": "validated.path", "tokenizer": "tokenizer"}
    output_path: ClassVar[str] = "cache_root"
    data: SummarizationData
    validated: ValidatedData
    tokenizer: str
    cache_root: str

    @property
    def key(self) -> str:
        return summarization_dataset_key(self.data, self.validated, self.tokenizer)


class _SummarizationShape(DataShape):
    def rules(self, data):
        return summarization_rules(data)


SHAPE = _SummarizationShape()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Tokenize a summarization dataset (a PreparationJob JSON)")
    parser.add_argument("--job", required=True, help="Path to a PreparationJob JSON file")
    job = PreparationJob.model_validate_json(Path(parser.parse_args(argv).job).read_text())
    print(prepare_summarization_dataset(job.data, job.validated, job.tokenizer, job.cache_root).model_dump_json())


if __name__ == "__main__":
    main()
