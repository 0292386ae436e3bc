"""Base-model task: a Hub id / local path as given, or a tiny offline model built for the recipe's data."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from llm_finetune.data.intake import ValidatedData
from llm_finetune.models.base import base_model_path
from llm_finetune.recipes import CausalModelSpec, ClassifierModelSpec, DataSource, ModelSpec, PretrainModelSpec
from llm_finetune.registry.mlflow_registry import download_registered_model


@task(name="materialize-base-model")
def materialize_base_model(model: ModelSpec | CausalModelSpec | ClassifierModelSpec | PretrainModelSpec,
                           data: DataSource, validated: ValidatedData, work_dir: str,
                           tracking_uri: str | None = None) -> str:
    """Name or local directory that `from_pretrained` accepts; a registered model (models:/name@alias) is
    resolved in `tracking_uri` and downloaded once."""
    cache = Path(work_dir) / "base-models"

    def fetch_registered(uri: str) -> str:
        return str(download_registered_model(tracking_uri, uri, cache / "registered"))

    path = base_model_path(model, data, validated, cache, fetch_registered if tracking_uri else None)
    get_run_logger().info("base model %s", path)
    return path
