"""The probe and counting recipes, and the probe gate section every training recipe may set."""

from pathlib import Path

import pytest

from llm_finetune.errors import RecipeError
from llm_finetune.recipes import InstructionRecipe, load_recipe
from llm_finetune.recipes.base import DEFAULT_SUITE
from llm_finetune.recipes.probes import InstructionProbeRecipe
from llm_finetune.recipes.text_to_image import TextToImageCountingRecipe
from tests.conftest import REPO

RECIPES = REPO / "recipes"


@pytest.mark.parametrize(("file", "recipe_type"), [
    ("instruction_following_probe_tiny.yaml", InstructionProbeRecipe),
    ("instruction_following_probe_mistral.yaml", InstructionProbeRecipe),
    ("text_to_image_counting_tiny.yaml", TextToImageCountingRecipe),
    ("text_to_image_counting_sdxl.yaml", TextToImageCountingRecipe),
])
def test_recipe_files_load(file, recipe_type):
    recipe = load_recipe(RECIPES / file, recipe_type)
    assert recipe.name == Path(file).stem.replace("_", "-")


def test_hub_recipes_name_the_models_the_issue_asks_for():
    probe = load_recipe(RECIPES / "instruction_following_probe_mistral.yaml", InstructionProbeRecipe)
    assert probe.models[0].name_or_path == "mistralai/Mistral-7B-Instruct-v0.3" and len(probe.models) == 2
    counting = load_recipe(RECIPES / "text_to_image_counting_sdxl.yaml", TextToImageCountingRecipe)
    assert counting.pipeline.name_or_path == "stabilityai/stable-diffusion-xl-base-1.0"
    assert counting.detector.name_or_path == "google/owlv2-base-patch16-ensemble"
    assert counting.prompts.counts == [1, 2, 3, 4, 5, 6]


def test_suite_paths_are_relative_to_the_recipe_file(tmp_path):
    (tmp_path / "suites").mkdir()
    path = tmp_path / "probe.yaml"
    path.write_text("models: [{name: a, name_or_path: org/model}, {name: b, name_or_path: suites}]\n"
                    "probes: {suite: suites/mine.yaml}\n")
    recipe = load_recipe(path, InstructionProbeRecipe)
    assert recipe.probes.suite == str(tmp_path / "suites" / "mine.yaml")
    assert [m.name_or_path for m in recipe.models] == ["org/model", str(tmp_path / "suites")]  # Hub id kept
    assert load_recipe(RECIPES / "instruction_following_probe_tiny.yaml",
                       InstructionProbeRecipe).probes.suite == str(DEFAULT_SUITE)


def test_probe_gate_is_off_by_default_and_its_suite_resolves_like_data():
    tiny = RECIPES / "dolly_llama2_tiny.yaml"
    assert load_recipe(tiny, InstructionRecipe).probe_gate is None
    recipe = load_recipe(tiny, InstructionRecipe, ["probe_gate={suite: gate.yaml, tolerance: 0.1}"])
    assert recipe.probe_gate.suite == str(Path.cwd() / "gate.yaml")  # set by an override: the working directory
    assert recipe.probe_gate.variants == ["zero_shot", "system_role", "few_shot", "format_reminder"]
    with pytest.raises(RecipeError, match=r"field 'probe_gate.tolerance': Input should be less than or equal to 1"):
        load_recipe(tiny, InstructionRecipe, ["probe_gate.tolerance=2"])


def test_probe_models_need_unique_names():
    with pytest.raises(RecipeError, match="model names must be unique"):
        load_recipe(RECIPES / "instruction_following_probe_tiny.yaml", InstructionProbeRecipe,
                    ["models=[{name: a, name_or_path: x/y}, {name: a, name_or_path: x/z}]"])
