import sys

import pytest
from pydantic import BaseModel

from llm_finetune.errors import RecipeError
from llm_finetune.recipes import ModelSpec, apply_overrides, load_recipe
from tests.conftest import DEFAULT_RECIPE, DIALOGSUM, REPO


def test_default_recipe_resolves_data_paths_relative_to_the_file():
    recipe = load_recipe(DEFAULT_RECIPE)
    assert recipe.data.train_uri == str(DIALOGSUM / "train.jsonl")  # lexical: a linked shared/ stays as linked
    assert recipe.model.tiny is not None and recipe.model.name_or_path is None


def test_hub_recipe_keeps_uris():
    recipe = load_recipe(REPO / "recipes" / "dialogsum_flan_t5_base.yaml")
    assert recipe.data.train_uri == "hf://knkarthick/dialogsum?split=train"
    assert recipe.model.name_or_path == "google/flan-t5-base"


def test_unknown_and_mistyped_fields_are_named(tmp_path):
    text = DEFAULT_RECIPE.read_text().replace("learning_rate: 0.002", "learning_rate: fast\n  epoch: 3")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    message = str(err.value)
    assert message.startswith(f"{path}: invalid recipe")
    assert "field 'training.learning_rate'" in message and "field 'training.epoch'" in message


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


def test_overrides_set_nested_keys_dicts_and_null():
    recipe = load_recipe(DEFAULT_RECIPE, overrides=[
        "training.max_steps=20", "model.tiny.d_model=32", "data.max_train_records=null",
        "approval.min_metrics={rougeL: 0.1, rouge1: 0.2}", "approval.min_gain_over_base.rouge2=0.5",
    ])
    assert recipe.training.max_steps == 20 and recipe.training.learning_rate == 0.002  # the rest stays as in the file
    assert recipe.model.tiny.d_model == 32 and recipe.model.tiny.vocab_size == 2000
    assert recipe.data.max_train_records is None
    assert recipe.approval.min_metrics == {"rougeL": 0.1, "rouge1": 0.2}
    assert recipe.approval.min_gain_over_base == {"rougeL": 0.02, "rouge2": 0.5}


def test_override_values_are_yaml_and_later_ones_win():
    class Section(BaseModel):
        tags: list[str] = []
        flag: bool = False

    class Recipe(BaseModel):
        section: Section | None = None
        name: str = ""

    raw = apply_overrides({"name": "a"}, ["section.tags=[a, 'b c']", "section.flag=true", "name=3", "name=x"], Recipe)
    assert raw == {"name": "x", "section": {"tags": ["a", "b c"], "flag": True}}
    assert apply_overrides(raw, ["section=null"], Recipe) == {"name": "x", "section": None}
    assert raw["section"] is not None  # the input is not changed


def test_switching_model_source_needs_both_keys():
    recipe = load_recipe(DEFAULT_RECIPE, overrides=["model.name_or_path=google/flan-t5-small", "model.tiny=null"])
    assert recipe.model.name_or_path == "google/flan-t5-small" and recipe.model.tiny is None
    with pytest.raises(RecipeError, match=r"field 'model': .*exactly one.*\(set by override model.name_or_path="):
        load_recipe(DEFAULT_RECIPE, overrides=["model.name_or_path=google/flan-t5-small"])


def test_unknown_override_key_suggests_the_field():
    for key, guess in [("training.lr", "training.learning_rate"), ("training.epoch", "training.epochs"),
                       ("evaluation.max_record", "evaluation.max_records"), ("endpont", "endpoint")]:
        with pytest.raises(RecipeError) as err:
            load_recipe(DEFAULT_RECIPE, overrides=[f"{key}=1"])
        assert str(err.value) == f"unknown recipe key '{key}'; did you mean '{guess}'?"
    with pytest.raises(RecipeError, match=r"^unknown recipe key 'registry.zzz'; known keys under 'registry': "
                                          r"tracking_uri, experiment, model_name, sagemaker$"):
        load_recipe(DEFAULT_RECIPE, overrides=["registry.zzz=1"])


def test_bad_override_value_names_the_key_and_the_override():
    with pytest.raises(RecipeError) as err:
        load_recipe(DEFAULT_RECIPE, overrides=["training.max_steps=abc", "evaluation.max_records=0"])
    assert str(err.value) == (
        f"{DEFAULT_RECIPE}: invalid recipe:\n"
        "  - field 'training.max_steps': Input should be a valid integer, unable to parse string as an integer"
        " (set by override training.max_steps=abc)\n"
        "  - field 'evaluation.max_records': Input should be greater than 0 (set by override evaluation.max_records=0)"
    )


def test_malformed_overrides_are_reported_together():
    with pytest.raises(RecipeError) as err:
        load_recipe(DEFAULT_RECIPE, overrides=["training.max_steps", "=3", "training.max_steps.x=1",
                                               "approval.min_metrics=[a"])
    assert str(err.value) == (
        "4 bad overrides:\n"
        "  - override 'training.max_steps' is not of the form key.sub=value (e.g. training.max_steps=20)\n"
        "  - override '=3' is not of the form key.sub=value (e.g. training.max_steps=20)\n"
        "  - recipe key 'training.max_steps' is a value, not a section; set it as training.max_steps=VALUE\n"
        "  - override 'approval.min_metrics=[a': the value is not valid YAML (expected ',' or ']', but got "
        "'<stream end>'); quote a string value"
    )


def test_override_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(DEFAULT_RECIPE, overrides=["data.train_uri=mine/train.jsonl", "data.max_train_records=8"])
    assert recipe.data.train_uri == str(tmp_path / "mine" / "train.jsonl")
    assert recipe.data.validation_uri == str(DIALOGSUM / "validation.jsonl")  # from the file: its folder
    assert load_recipe(DEFAULT_RECIPE, overrides=["data.train_uri=s3://b/k.jsonl"]).data.train_uri == "s3://b/k.jsonl"
def test_generation_settings_are_range_checked_and_named(tmp_path):
    path = tmp_path / "r.yaml"
    text = DEFAULT_RECIPE.read_text()
    path.write_text(text.replace("max_new_tokens: 48", "max_new_tokens: 0", 1).replace("num_samples_shown: 3",
                                                                                      "num_samples_shown: 3\n  num_beams: 2"))
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert "field 'evaluation.generation.max_new_tokens': Input should be greater than or equal to 1" in str(err.value)
    assert "field 'evaluation.num_beams': Extra inputs are not permitted" in str(err.value)


def test_overrides_reach_into_named_sections_of_a_dict():
    from llm_finetune.recipes import SentimentComparisonRecipe

    path = REPO / "recipes" / "sentiment_comparison_tiny.yaml"
    recipe = load_recipe(path, SentimentComparisonRecipe, ["arms.gpt2.model.gpt2.n_embd=32", "seeds=[4]"])
    assert recipe.arms["gpt2"].model.gpt2.n_embd == 32 and recipe.seeds == [4]
    with pytest.raises(RecipeError, match="unknown recipe key 'arms.gpt2.modle'; did you mean 'arms.gpt2.model'"):
        load_recipe(path, SentimentComparisonRecipe, ["arms.gpt2.modle.tiny.hidden_size=32"])


def test_training_sections_share_their_names_and_old_seq2seq_names_still_load():
    from llm_finetune.recipes import PretrainParams, Seq2SeqTrainingParams, SFTParams, TrainerParams

    shared = {"epochs", "warmup", "learning_rate", "precision", "save_steps", "nproc_per_node", "backend"}
    for section in (Seq2SeqTrainingParams, SFTParams, TrainerParams, PretrainParams):
        assert shared <= set(section.model_fields)
    old = Seq2SeqTrainingParams.model_validate({"num_train_epochs": 2, "warmup_steps": 5})
    assert (old.epochs, old.warmup) == (2, 5)
    with pytest.raises(ValueError, match="set 'epochs' only"):
        Seq2SeqTrainingParams.model_validate({"num_train_epochs": 2, "epochs": 3})


TRAINING_SECTIONS = ("Seq2SeqTrainingParams", "SFTParams", "TrainerParams", "PretrainParams")


@pytest.mark.parametrize("steps", [0, -5])
def test_max_steps_other_than_minus_one_or_a_step_count_is_refused_naming_the_field(steps):
    import llm_finetune.recipes as recipes

    with pytest.raises(RecipeError) as err:
        load_recipe(DEFAULT_RECIPE, overrides=[f"training.max_steps={steps}"])
    assert str(err.value) == (
        f"{DEFAULT_RECIPE}: invalid recipe:\n  - field 'training.max_steps': Value error, max_steps is -1 (train for "
        f"`epochs`) or a step count >= 1, not {steps} (set by override training.max_steps={steps})")
    for name in TRAINING_SECTIONS:
        with pytest.raises(ValueError, match="max_steps is -1"):
            getattr(recipes, name)(max_steps=steps)


def test_equivalent_training_settings_share_a_fingerprint(tmp_path):
    """With max_steps set, epochs do not change the run; without it they do; compile never does; old Seq2Seq names are
    the new ones."""
    import llm_finetune.recipes as recipes
    from llm_finetune.fingerprint import fingerprint
    from llm_finetune.training.seq2seq import seq2seq_job

    for name in TRAINING_SECTIONS:
        section = getattr(recipes, name)
        assert len({fingerprint(section(max_steps=20, epochs=epochs)) for epochs in (1, 3)}) == 1
        assert len({fingerprint(section(epochs=epochs)) for epochs in (1, 3)}) == 2
        assert section(max_steps=20, epochs=3).model_dump()["epochs"] == 3  # only the fingerprint leaves it out
        assert fingerprint(section(compile=True)) == fingerprint(section())  # speed only: the same weights
        assert section(compile=True).model_dump()["compile"] is True
    old = recipes.Seq2SeqTrainingParams.model_validate({"num_train_epochs": 2, "warmup_steps": 5})
    assert fingerprint(old) == fingerprint(recipes.Seq2SeqTrainingParams(epochs=2, warmup=5))

    def run_folder(*overrides: str) -> str:
        recipe = load_recipe(DEFAULT_RECIPE, overrides=list(overrides))
        return seq2seq_job("base", "data", "data-key", "{dialogue}", recipe.training, tmp_path).output_dir

    assert run_folder("training.max_steps=20", "training.epochs=1") == run_folder("training.max_steps=20")
    assert run_folder("training.epochs=1") != run_folder()


def test_registry_is_the_team_server_when_mlflow_tracking_uri_is_set(monkeypatch, tmp_path):
    recipe = load_recipe(DEFAULT_RECIPE, overrides=[f"work_dir={tmp_path}"])
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert recipe.tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5001")  # scripts/team_up.sh's env file
    assert recipe.tracking_uri() == "http://127.0.0.1:5001"
    pinned = load_recipe(DEFAULT_RECIPE, overrides=["registry.tracking_uri=sqlite:///elsewhere.db"])
    assert pinned.tracking_uri() == "sqlite:///elsewhere.db"  # a recipe's own URI wins


def test_tracking_uri_may_be_a_sagemaker_managed_mlflow_arn(monkeypatch):
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/team"
    assert load_recipe(DEFAULT_RECIPE, overrides=[f"registry.tracking_uri={arn}"]).tracking_uri() == arn
    app = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-app/app-6fjzbxzvqeqa"
    assert load_recipe(DEFAULT_RECIPE, overrides=[f"registry.tracking_uri={app}"]).tracking_uri() == app
    with pytest.raises(RecipeError, match=r"field 'registry.tracking_uri'.*is not a SageMaker managed MLflow ARN: "
                                          r"expected arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME"):
        load_recipe(DEFAULT_RECIPE, overrides=["registry.tracking_uri=arn:aws:sagemaker:eu-west-1:1234:team"])
    monkeypatch.setitem(sys.modules, "sagemaker_mlflow", None)  # as where the plugin is not installed
    with pytest.raises(RecipeError, match=r"field 'registry.tracking_uri'.*needs the sagemaker-mlflow plugin "
                                          r"\(pip install sagemaker-mlflow"):
        load_recipe(DEFAULT_RECIPE, overrides=[f"registry.tracking_uri={arn}"])
