"""The base model of a recipe: its Hub id / local path as given, or a tiny offline model built for its data."""

from __future__ import annotations

from pathlib import Path

from llm_finetune.data.intake import ValidatedData
from llm_finetune.recipes import CausalModelSpec, DataSource, ModelSpec


def base_model_path(model: ModelSpec | CausalModelSpec, data: DataSource, validated: ValidatedData,
                    cache_root: str | Path) -> str:
    """Name or local directory that `from_pretrained` accepts; a tiny model's tokenizer is trained on `data`."""
    if model.name_or_path:
        return model.name_or_path
    if isinstance(model, CausalModelSpec):
        from llm_finetune.models.tiny_causal import build_tiny_causal_for_instructions

        return str(build_tiny_causal_for_instructions(model.tiny, data, validated, cache_root))
    from llm_finetune.models.tiny_t5 import build_tiny_t5_for_summarization

    return str(build_tiny_t5_for_summarization(model.tiny, data, validated, cache_root))
