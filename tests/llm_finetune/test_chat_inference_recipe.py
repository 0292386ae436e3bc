import pytest

from llm_finetune.errors import RecipeError
from llm_finetune.recipes import ChatInferenceRecipe, DecodingSetting, InferenceTarget, PromptSuiteSpec, load_recipe
from tests.chat_helpers import SUITES
from tests.conftest import REPO

RECIPES = sorted((REPO / "recipes").glob("chatbot_inference_*.yaml"))
TINY = REPO / "recipes" / "chatbot_inference_tiny.yaml"


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_chat_inference_recipes_load(path):
    recipe = load_recipe(path, ChatInferenceRecipe)
    assert list(recipe.suites) == ["chat", "assistant", "cot-arithmetic"]
    assert recipe.suites["cot-arithmetic"].path == str(SUITES / "cot_arithmetic.jsonl")  # relative to the file
    names = [d.name for d in recipe.grid.decoding]
    assert names == ["greedy", "beam4", "sample-t0.7", "sample-t1.2"] and len(recipe.grid.max_new_tokens) == 2
    assert all(d.seed is not None for d in recipe.grid.decoding if d.do_sample)


def test_overrides_reach_one_suite_and_switch_the_endpoint():
    recipe = load_recipe(TINY, ChatInferenceRecipe, [
        "suites.cot-arithmetic.route=inputs", "suites.cot-arithmetic.styles=[direct]", "endpoint.registered_model=null",
        "endpoint.url=http://127.0.0.1:8080", "grid.max_new_tokens=[16]"])
    assert recipe.suites["cot-arithmetic"].route == "inputs" and recipe.suites["cot-arithmetic"].styles == ["direct"]
    assert recipe.endpoint.url == "http://127.0.0.1:8080" and recipe.grid.max_new_tokens == [16]
    with pytest.raises(RecipeError, match=r"unknown recipe key 'suites.chat.max_record'; did you mean"):
        load_recipe(TINY, ChatInferenceRecipe, ["suites.chat.max_record=2"])


def test_endpoint_is_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one of 'url', 'sagemaker_endpoint' or 'registered_model'"):
        InferenceTarget()
    with pytest.raises(ValueError, match=r"\(got url, sagemaker_endpoint\)"):
        InferenceTarget(url="http://x", sagemaker_endpoint="y")
    with pytest.raises(ValueError, match="token_env applies to HTTP endpoints"):
        InferenceTarget(sagemaker_endpoint="y", token_env="T")
    with pytest.raises(ValueError, match="exactly one of 'version' or 'alias'"):
        InferenceTarget(registered_model={"name": "m"})
    with pytest.raises(RecipeError, match=r"field 'endpoint': .*exactly one.*\(set by override endpoint.url=http"):
        load_recipe(TINY, ChatInferenceRecipe, ["endpoint.url=http://x"])


def test_decoding_settings_are_checked_with_the_generation_bounds():
    with pytest.raises(ValueError, match="temperature: Input should be greater than 0"):
        DecodingSetting(name="hot", do_sample=True, temperature=0, seed=1)
    with pytest.raises(ValueError, match="temperature, top_p: set do_sample: true"):
        DecodingSetting(name="x", temperature=0.7, top_p=0.9)
    with pytest.raises(ValueError, match="sampling needs a fixed seed"):
        DecodingSetting(name="x", do_sample=True)
    with pytest.raises(ValueError, match="choose sampling or beam search"):
        DecodingSetting(name="x", do_sample=True, seed=1, num_beams=2)
    with pytest.raises(RecipeError, match=r"field 'grid.max_new_tokens': Value error, 0: Input should be greater than"):
        load_recipe(TINY, ChatInferenceRecipe, ["grid.max_new_tokens=[0]"])  # 0: greater than or equal to 1
    with pytest.raises(RecipeError, match="decoding names and max_new_tokens must be unique"):
        load_recipe(TINY, ChatInferenceRecipe, ["grid.max_new_tokens=[8, 8]"])


def test_suite_settings():
    with pytest.raises(ValueError, match="a chat suite holds chat messages: set route: chat"):
        PromptSuiteSpec(path="x.jsonl", kind="chat", route="inputs")
    with pytest.raises(RecipeError, match=r"field 'suites.Chat.\[key\]': String should match pattern"):
        load_recipe(TINY, ChatInferenceRecipe, ["suites={Chat: {path: x.jsonl, kind: chat}}"])
