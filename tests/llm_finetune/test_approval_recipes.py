"""An approval policy names metrics its flow measures, each the right way round, and measures a gain."""

import pytest

from llm_finetune.errors import RecipeError
from llm_finetune.recipes import (
    ClassificationRecipe,
    CodePretrainingRecipe,
    InstructionRecipe,
    SummarizationRecipe,
    load_recipe,
)
from tests.conftest import REPO

RECIPES = REPO / "recipes"


def test_a_misspelled_metric_is_refused_at_load_with_a_suggestion():
    with pytest.raises(RecipeError, match=r"approval.min_metrics: unknown metric 'rogueL'; did you mean 'rougeL'\?"):
        load_recipe(RECIPES / "dialogsum_flan_t5_tiny.yaml", SummarizationRecipe,
                    ["approval.min_metrics={rogueL: 0.1}"])


def test_a_lower_is_better_metric_cannot_take_a_gain_floor():
    with pytest.raises(RecipeError, match="'perplexity' is lower-is-better; use min_relative_decrease"):
        load_recipe(RECIPES / "dolly_llama2_tiny.yaml", InstructionRecipe,
                    ["approval.min_gain_over_base={perplexity: 0.0}"])


def test_a_policy_without_a_gain_threshold_is_refused():
    with pytest.raises(RecipeError, match="without a gain threshold a model that learned nothing passes"):
        load_recipe(RECIPES / "imdb_sentiment_gpt2_tiny.yaml", ClassificationRecipe,
                    ["approval.min_gain_over_base={}"])
    plumbing = load_recipe(RECIPES / "imdb_sentiment_gpt2_tiny.yaml", ClassificationRecipe,
                           ["approval.min_gain_over_base={}", "approval.require_gain=false"])
    assert plumbing.approval.min_gain_over_base == {}


def test_a_metric_without_per_record_values_cannot_take_a_gain_threshold():
    with pytest.raises(RecipeError, match="'macro_f1' has no per-record values"):
        load_recipe(RECIPES / "imdb_sentiment_gpt2_tiny.yaml", ClassificationRecipe,
                    ["approval.min_gain_over_base={macro_f1: 0.0}"])


def test_pretraining_metrics_follow_the_recipes_held_out_sets():
    recipe = load_recipe(RECIPES / "codeparrot_gpt2_tiny.yaml", CodePretrainingRecipe)
    names = set(recipe.metric_directions())
    assert {"perplexity_in_domain"} <= names
    assert {f"perplexity_{name}" for name in recipe.evaluation.out_of_domain} <= names
    with pytest.raises(RecipeError, match="unknown metric 'perplexity_nowhere'"):
        load_recipe(RECIPES / "codeparrot_gpt2_tiny.yaml", CodePretrainingRecipe,
                    ["approval.max_relative_increase={perplexity_nowhere: 0.1}"])
