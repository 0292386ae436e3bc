"""Pretraining recipes: every YAML loads with its type; held-out set paths are relative to the file; names checked."""

import pytest

from llm_finetune.errors import RecipeError
from llm_finetune.recipes import CodePretrainingRecipe, ContinuedPretrainingRecipe, load_recipe
from tests.conftest import REPO
from tests.conftest import SHARED_DATA as SHARED

RECIPES = [(p, ContinuedPretrainingRecipe) for p in sorted((REPO / "recipes").glob("continued_pretraining_*.yaml"))]
RECIPES += [(p, CodePretrainingRecipe) for p in sorted((REPO / "recipes").glob("codeparrot_*.yaml"))]


@pytest.mark.parametrize("path, recipe_type", RECIPES, ids=lambda p: getattr(p, "name", ""))
def test_pretraining_recipes_load(path, recipe_type):
    recipe = load_recipe(path, recipe_type)
    assert recipe.approval.min_relative_decrease["perplexity_in_domain"] > 0 and not recipe.approval.manual_review
    if recipe_type is ContinuedPretrainingRecipe:
        assert recipe.data.train_uri == str(SHARED / "movie_plots")
        assert recipe.approval.previous_alias == "previous-champion"
        assert "perplexity_out_of_domain" in recipe.approval.max_relative_increase
        assert recipe.evaluation.out_of_domain["python_code"].uri == str(SHARED / "python_code" / "validation.jsonl")
    else:
        assert recipe.model.config.tokenizer == "train" and recipe.data.text_field == "content"


def test_codeparrot_small_has_the_published_sizes():
    spec = load_recipe(REPO / "recipes" / "codeparrot_small.yaml", CodePretrainingRecipe).model.config
    assert (spec.vocab_size, spec.n_embd, spec.n_layer, spec.n_head, spec.n_positions) == (32768, 768, 12, 12, 1024)


def test_reserved_set_names_and_model_choice_are_checked():
    path = REPO / "recipes" / "continued_pretraining_gpt2_tiny.yaml"
    with pytest.raises(RecipeError, match=r"out_of_domain set names \['in_domain'\] are reserved"):
        load_recipe(path, ContinuedPretrainingRecipe, ["evaluation.out_of_domain={in_domain: {uri: x.jsonl}}"])
    with pytest.raises(RecipeError, match=r"field 'model': .*exactly one of 'name_or_path' or 'config'"):
        load_recipe(path, ContinuedPretrainingRecipe, ["model.name_or_path=gpt2"])
    with pytest.raises(RecipeError, match=r"field 'replay_share': Input should be less than 1"):
        load_recipe(path, ContinuedPretrainingRecipe, ["replay_share=1"])
