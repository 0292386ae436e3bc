import pytest

from llm_finetune.errors import RecipeError
from llm_finetune.recipes import ModelSpec, load_recipe
from tests.conftest import DEFAULT_RECIPE, DIALOGSUM, REPO


def test_default_recipe_resolves_data_paths_relative_to_the_file():
    recipe = load_recipe(DEFAULT_RECIPE)
    assert recipe.data.train_uri == str((DIALOGSUM / "train.jsonl").resolve())
    assert recipe.model.tiny is not None and recipe.model.name_or_path is None


def test_hub_recipe_keeps_uris():
    recipe = load_recipe(REPO / "recipes" / "dialogsum_flan_t5_base.yaml")
    assert recipe.data.train_uri == "hf://knkarthick/dialogsum?split=train"
    assert recipe.model.name_or_path == "google/flan-t5-base"


def test_unknown_and_mistyped_fields_are_named(tmp_path):
    text = DEFAULT_RECIPE.read_text().replace("learning_rate: 0.002", "learning_rate: fast\n  epochs: 3")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    message = str(err.value)
    assert message.startswith(f"{path}: invalid recipe")
    assert "field 'training.learning_rate'" in message and "field 'training.epochs'" in message


def test_prompt_template_needs_dialogue_slot(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(DEFAULT_RECIPE.read_text().replace("id_field: fname", "id_field: fname\n  prompt_template: 'Sum:'"))
    with pytest.raises(RecipeError, match=r"field 'data.prompt_template'.*\{dialogue\}"):
        load_recipe(path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "none.yaml")
    (tmp_path / "x.yaml").write_text("data: [unclosed")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(tmp_path / "x.yaml")


def test_model_spec_needs_exactly_one_source():
    with pytest.raises(ValueError, match="exactly one"):
        ModelSpec()
    with pytest.raises(ValueError, match="exactly one"):
        ModelSpec(name_or_path="google/flan-t5-base", tiny={})


def test_generation_settings_are_range_checked_and_named(tmp_path):
    path = tmp_path / "r.yaml"
    text = DEFAULT_RECIPE.read_text()
    path.write_text(text.replace("max_new_tokens: 48", "max_new_tokens: 0", 1).replace("num_samples_shown: 3",
                                                                                      "num_samples_shown: 3\n  num_beams: 2"))
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert "field 'evaluation.generation.max_new_tokens': Input should be greater than or equal to 1" in str(err.value)
    assert "field 'evaluation.num_beams': Extra inputs are not permitted" in str(err.value)
