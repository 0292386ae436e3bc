"""Base-model task: a Hub id / local path as given, or a tiny offline T5 built from the recipe."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from llm_finetune.data.intake import ValidatedData
from llm_finetune.models.tiny_t5 import build_tiny_t5_for_summarization
from llm_finetune.recipes import ModelSpec, SummarizationData


@task(name="materialize-base-model")
def materialize_base_model(model: ModelSpec, data: SummarizationData, validated: ValidatedData, work_dir: str) -> str:
    """Name or local directory that `from_pretrained` accepts."""
    if model.name_or_path:
        return model.name_or_path
    path = build_tiny_t5_for_summarization(model.tiny, data, validated, Path(work_dir) / "base-models")
    get_run_logger().info("tiny T5 base model at %s", path)
    return str(path)
