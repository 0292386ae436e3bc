"""Dialogue-summarization data: validated splits, prompts, and a tokenized, content-addressed cache."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from llm_finetune.data.intake import FieldRule, ValidatedData
from llm_finetune.fingerprint import build_once, fingerprint, name_or_path_key
from llm_finetune.recipes import SummarizationData
from llm_finetune.serving.endpoint import EndpointTestCase


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
    return [EndpointTestCase(id=r["id"], inputs=r["dialogue"], reference=r["summary"])
            for r in summarization_records(validated, "validation", data, limit)]


def prepare_summarization_dataset(
    data: SummarizationData, validated: ValidatedData, tokenizer_name_or_path: str, cache_root: str | Path
) -> PreparedDataset:
    """Tokenize prompts and summaries without padding (the collator pads each batch to its own longest record).

    The result is stored under cache_root/<fingerprint of file bytes, data settings and tokenizer>; a second call
    with the same inputs loads it instead of tokenizing again.
    """

    key = fingerprint(
        "summarization-dataset-v2",
        validated.fingerprint,
        data,
        name_or_path_key(tokenizer_name_or_path, suffixes=(".json", ".model", ".txt")),  # tokenizer files only
    )
    out = Path(cache_root) / key
    with build_once(out) as needed:
        if needed:
            prepared = _tokenize(data, validated, tokenizer_name_or_path, out, key)
            (out / "prepared.json").write_text(prepared.model_dump_json(indent=2))
            return prepared
    return PreparedDataset.model_validate_json((out / "prepared.json").read_text()).model_copy(update={"reused": True})


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
    tokenized.save_to_disk(str(out / "dataset"))
    return PreparedDataset(
        path=str(out / "dataset"),
        fingerprint=key,
        num_train=len(tokenized["train"]),
        num_validation=len(tokenized["validation"]),
        source_tokens=sum(len(x) for x in tokenized["train"]["input_ids"]),
        target_tokens=sum(len(x) for x in tokenized["train"]["labels"]),
        reused=False,
    )
