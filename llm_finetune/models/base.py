"""The base model of a recipe: its Hub id / local path as given, or a tiny offline model built for its data."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from llm_finetune.data.intake import ValidatedData
from llm_finetune.fingerprint import fingerprint
from llm_finetune.recipes import CausalModelSpec, DataSource, ModelSpec, PretrainModelSpec


class StartingModel(BaseModel):
    """The model a run trains: the registry's champion, or the recipe's base model when there is none yet."""

    path: str
    label: str  # 'champion v3' or 'base model'
    version: str | None = None


def base_model_path(model: ModelSpec | CausalModelSpec | PretrainModelSpec, data: DataSource,
                    validated: ValidatedData, cache_root: str | Path) -> str:
    """Name or local directory that `from_pretrained` accepts; a tiny model's tokenizer is trained on `data`."""
    if model.name_or_path:
        return model.name_or_path
    if isinstance(model, PretrainModelSpec):
        from llm_finetune.data.raw_text import documents
        from llm_finetune.models.gpt2 import build_gpt2

        corpus = documents(validated, "train", data.text_field, data.max_train_records)  # RawTextData
        return str(build_gpt2(model.config, corpus, cache_root,
                              corpus_key=fingerprint(validated.fingerprint, data.text_field, data.max_train_records)))
    if isinstance(model, CausalModelSpec):
        from llm_finetune.models.tiny_causal import build_tiny_causal_for_instructions

        return str(build_tiny_causal_for_instructions(model.tiny, data, validated, cache_root))
    from llm_finetune.models.tiny_t5 import build_tiny_t5_for_summarization

    return str(build_tiny_t5_for_summarization(model.tiny, data, validated, cache_root))
