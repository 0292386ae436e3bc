"""The base model of a recipe: its Hub id / local path as given, or a tiny offline model built for its data."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from llm_finetune.data.intake import ValidatedData
from llm_finetune.fingerprint import fingerprint
from llm_finetune.recipes import (
    CausalModelSpec,
    ClassifierModelSpec,
    DataSource,
    InstructionData,
    ModelSpec,
    PretrainModelSpec,
)


class StartingModel(BaseModel):
    """The model a run trains: the registry's champion, or the recipe's base model when there is none yet."""

    path: str
    label: str  # 'champion v3' or 'base model'
    version: str | None = None


def base_model_path(model: ModelSpec | CausalModelSpec | ClassifierModelSpec | PretrainModelSpec, data: DataSource,
                    validated: ValidatedData, cache_root: str | Path, tracking_uri: str | None = None) -> str:
    """Name or local directory that `from_pretrained` accepts; a tiny model's tokenizer is trained on `data`; a
    registered model (models:/name@alias) is looked up in `tracking_uri`."""
    if model.name_or_path:
        return model.name_or_path
    if isinstance(model, PretrainModelSpec):
        from llm_finetune.data.raw_text import documents
        from llm_finetune.models.gpt2 import build_gpt2

        corpus = documents(validated, "train", data.text_field, data.max_train_records)  # RawTextData
        return str(build_gpt2(model.config, corpus, cache_root,
                              corpus_key=fingerprint(validated.fingerprint, data.text_field, data.max_train_records)))
    if isinstance(model, ClassifierModelSpec) and model.bundled:
        from llm_finetune.models.sources import bundled_model_path

        return str(bundled_model_path(model.bundled))
    if isinstance(model, ClassifierModelSpec) and model.gpt2:
        from llm_finetune.models.gpt2 import build_gpt2

        if model.gpt2.tokenizer != "gpt2":
            raise ValueError("model.gpt2.tokenizer: a classifier's GPT-2 base uses the GPT-2 tokenizer ('gpt2')")
        return str(build_gpt2(model.gpt2, [], cache_root, corpus_key=""))
    if isinstance(model, ClassifierModelSpec) and model.registered:
        from llm_finetune.registry.mlflow_registry import download_registered_model

        if tracking_uri is None:
            raise ValueError("a registered base model needs the recipe's tracking URI")
        return str(download_registered_model(tracking_uri, model.registered, Path(cache_root) / "registered"))
    if isinstance(model, (CausalModelSpec, ClassifierModelSpec)) and not isinstance(data, InstructionData):
        from llm_finetune.data.shapes import tokenizer_corpus
        from llm_finetune.models.tiny_causal import build_tiny_causal_lm

        # the corpus depends on the data and its fields, not on how long sequences are cut
        cut = {"max_length", "truncation", "head_fraction", "overlong_records", "max_validation_records"}
        key = fingerprint(validated.fingerprint, type(data).__name__, data.model_dump(exclude=cut))
        return str(build_tiny_causal_lm(model.tiny, tokenizer_corpus(validated, data), cache_root, corpus_key=key))
    if isinstance(model, CausalModelSpec):
        from llm_finetune.models.tiny_causal import build_tiny_causal_for_instructions

        return str(build_tiny_causal_for_instructions(model.tiny, data, validated, cache_root))
    from llm_finetune.models.tiny_t5 import build_tiny_t5_for_summarization

    return str(build_tiny_t5_for_summarization(model.tiny, data, validated, cache_root))
