"""Every IMDB, sentiment-comparison and SQuAD recipe file loads with its recipe type; the sections' own rules."""

import pytest
from pydantic import ValidationError

from llm_finetune.recipes import (
    ClassificationRecipe,
    ClassifierModelSpec,
    QARecipe,
    SentimentComparisonRecipe,
    load_recipe,
)
from tests.conftest import REPO

RECIPES = [(p, ClassificationRecipe) for p in sorted((REPO / "recipes").glob("imdb_sentiment_*.yaml"))]
RECIPES += [(p, QARecipe) for p in sorted((REPO / "recipes").glob("squad_*.yaml"))]
RECIPES += [(REPO / "recipes" / "sentiment_comparison_tiny.yaml", SentimentComparisonRecipe)]


@pytest.mark.parametrize("path, recipe_type", RECIPES, ids=[p.stem for p, _ in RECIPES])
def test_recipe_file_loads(path, recipe_type):
    recipe = load_recipe(path, recipe_type)
    assert recipe.data.train_uri.endswith("train.jsonl") or recipe.data.train_uri.startswith("hf://")


def test_comparison_arms_become_single_run_recipes():
    recipe = load_recipe(REPO / "recipes" / "sentiment_comparison_tiny.yaml", SentimentComparisonRecipe)
    arm = recipe.arm_recipe("gpt2_large_qlora", seed=3)
    assert arm.training.seed == 3 and arm.lora.quantization.load_in_4bit and arm.model.tiny.hidden_size == 1280
    assert arm.data == recipe.data and recipe.arm_recipe("bert", 3).training.learning_rate == 5e-5
    with pytest.raises(ValidationError, match=r"unknown arm\(s\) \['gtp2'\]"):
        SentimentComparisonRecipe.model_validate({**recipe.model_dump(), "paired": ["gtp2", "gpt2"]})


def test_model_sources_are_exclusive_and_registered_uris_are_checked():
    with pytest.raises(ValidationError, match="exactly one of 'name_or_path', 'bundled', 'registered', 'gpt2' or 'tiny'"):
        ClassifierModelSpec(name_or_path="gpt2", bundled="minilm-l6")
    with pytest.raises(ValidationError, match="models:/<name>@<alias>"):
        ClassifierModelSpec(registered="continued-pretraining")


def test_generative_falcon_refuses_packing():
    recipe = load_recipe(REPO / "recipes" / "squad_falcon_tiny.yaml", QARecipe)
    with pytest.raises(ValidationError, match="packed Falcon batches"):
        QARecipe.model_validate({**recipe.model_dump(), "generative": {
            **recipe.generative.model_dump(), "training": {**recipe.generative.training.model_dump(), "packing": True}}})


def test_gpt2_arm_starts_from_the_continued_pretraining_base(tmp_path):
    """Arm (a) offline is the very model continued pretraining starts from, so arm (b) differs only by pretraining."""
    from llm_finetune.models.base import base_model_path
    from llm_finetune.models.gpt2 import build_gpt2
    from llm_finetune.recipes import ContinuedPretrainingRecipe

    pretrain = load_recipe(REPO / "recipes" / "continued_pretraining_gpt2_tiny.yaml", ContinuedPretrainingRecipe)
    for recipe in (load_recipe(REPO / "recipes" / "imdb_sentiment_gpt2_tiny.yaml", ClassificationRecipe),
                   load_recipe(REPO / "recipes" / "sentiment_comparison_tiny.yaml",
                               SentimentComparisonRecipe).arm_recipe("gpt2", seed=1)):
        arm_base = base_model_path(recipe.model, recipe.data, None, tmp_path)
        assert arm_base == str(build_gpt2(pretrain.model.config, [], tmp_path, corpus_key="unused"))
        assert (tmp_path / arm_base / "model.safetensors").exists()


def test_movie_plot_arm_names_the_model_continued_pretraining_registers():
    from llm_finetune.recipes import ContinuedPretrainingRecipe

    registered = load_recipe(REPO / "recipes" / "continued_pretraining_gpt2_tiny.yaml",
                             ContinuedPretrainingRecipe).registry.model_name
    arm = load_recipe(REPO / "recipes" / "imdb_sentiment_gpt2_movie_plots.yaml", ClassificationRecipe)
    comparison = load_recipe(REPO / "recipes" / "sentiment_comparison_tiny.yaml", SentimentComparisonRecipe)
    assert arm.model.registered == comparison.arms["gpt2_movie_plots"].model.registered == \
        f"models:/{registered}@champion"
    assert arm.tracking_uri() == load_recipe(REPO / "recipes" / "continued_pretraining_gpt2_tiny.yaml",
                                             ContinuedPretrainingRecipe).tracking_uri()  # the same registry
