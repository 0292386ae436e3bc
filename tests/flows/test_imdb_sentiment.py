"""imdb-sentiment end to end on a tiny GPT-2 through the shared release path; arm (b) resolves the registry champion."""

import json
from functools import partial
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from flows.imdb_sentiment import DEFAULT_RECIPE_PATH, imdb_sentiment
from llm_finetune.errors import RegistryLookupError
from llm_finetune.models.base import base_model_path
from llm_finetune.recipes import ClassificationRecipe, ClassifierModelSpec, load_recipe
from llm_finetune.registry.mlflow_registry import download_registered_model

SMALL = ("data.max_train_records=64", "data.max_validation_records=24", "data.max_length=64",
         "model.gpt2.n_embd=32",
         "training.max_steps=8", "training.logging_steps=2", "training.save_steps=100",
         "endpoint.num_test_records=2", "approval.min_metrics={accuracy: 0.0}",
         "approval.min_gain_over_base={}", "approval.require_gain=false")


pytestmark = pytest.mark.usefixtures("prefect_server")  # the process's temporary Prefect server (conftest)


def small(work_dir, *overrides) -> ClassificationRecipe:
    where = (f"work_dir={work_dir}", f"registry.tracking_uri=sqlite:///{work_dir / 'mlflow.db'}")
    return load_recipe(DEFAULT_RECIPE_PATH, ClassificationRecipe, [*where, *SMALL, *overrides])


def test_imdb_sentiment_end_to_end(tmp_path):
    recipe = small(tmp_path)
    outcome = imdb_sentiment(recipe=recipe)

    with open(recipe.data.train_uri) as f:  # not splitlines(): reviews hold Unicode line separators
        first_64 = [json.loads(next(f))["label"] for _ in range(64)]
    assert outcome.class_balance["train"] == {label: first_64.count(label) for label in ("negative", "positive")}
    assert sum(map(sum, outcome.confusion)) == 24 and len(outcome.confusion) == 2
    assert set(outcome.metrics["finetuned"]) == {"accuracy", "macro_f1"}
    assert outcome.decision.approved and outcome.endpoint_test.num_requests == 2
    assert all(r["output"] in ("negative", "positive") for r in outcome.endpoint_test.results)
    version = mlflow.MlflowClient(recipe.tracking_uri()).get_model_version(recipe.registry.model_name,
                                                                           outcome.version.version)
    assert version.tags["served_kind"] == "text-classification"
    mlflow.set_tracking_uri(recipe.tracking_uri())
    pyfunc = mlflow.pyfunc.load_model(f"models:/{recipe.registry.model_name}/{outcome.version.version}")
    assert pyfunc.predict(pd.DataFrame({"text": ["Great film.", "Awful."]})) in (
        [a, b] for a in ("negative", "positive") for b in ("negative", "positive"))

    # Arm (b) resolves a champion by alias: here, the model just approved.
    spec = ClassifierModelSpec(registered=f"models:/{recipe.registry.model_name}@champion")
    fetch = partial(download_registered_model, recipe.tracking_uri(), cache_root=tmp_path / "bases" / "registered")
    base = Path(base_model_path(spec, recipe.data, None, tmp_path / "bases", fetch))
    assert base.is_relative_to(tmp_path / "bases" / "registered" /
                               f"{recipe.registry.model_name}-v{outcome.version.version}")
    assert (base / "model.safetensors").read_bytes() == (Path(outcome.training.model_dir) /
                                                          "model.safetensors").read_bytes()


def test_registered_arm_without_champion_fails_clearly(tmp_path):
    recipe = small(tmp_path, "model.gpt2=null", "model.registered=models:/continued-pretraining@champion")
    with pytest.raises(RegistryLookupError, match="registered model 'continued-pretraining' has no version with "
                                                   "alias 'champion'"):
        imdb_sentiment(recipe=recipe)
    assert not (tmp_path / "runs").exists()
