"""The base model of a recipe: its Hub id / local path as given, or a tiny offline model built for its data."""

from __future__ import annotations

from pathlib import Path

from llm_finetune.data.intake import ValidatedData
from llm_finetune.fingerprint import fingerprint
from llm_finetune.recipes import ClassifierModelSpec, CausalModelSpec, DataSource, InstructionData, ModelSpec


def base_model_path(model: ModelSpec | CausalModelSpec | ClassifierModelSpec, data: DataSource,
                    validated: ValidatedData, cache_root: str | Path, tracking_uri: str | None = None) -> str:
    """Name or local directory that `from_pretrained` accepts; a tiny model's tokenizer is trained on `data`; a
    registered model (models:/name@alias) is looked up in `tracking_uri`."""
    if model.name_or_path:
        return model.name_or_path
    if isinstance(model, ClassifierModelSpec) and model.bundled:
        from llm_finetune.models.sources import bundled_model_path

        return str(bundled_model_path(model.bundled))
    if isinstance(model, ClassifierModelSpec) and model.registered:
        from llm_finetune.models.sources import registered_model_path

        if tracking_uri is None:
            raise ValueError("a registered base model needs the recipe's tracking URI")
        return str(registered_model_path(model.registered, tracking_uri, cache_root))
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
