"""Recipe paths in JSON (a deployment's form, a run's parameters): relative to the project root, read back against the
project root of the machine that validates them; absolute in memory; fingerprints as before."""

import json
import shutil
from pathlib import Path

from llm_finetune.fingerprint import FINGERPRINT_CONTEXT, fingerprint
from llm_finetune.recipes import ContinuedPretrainingRecipe, SummarizationRecipe, load_recipe, paths
from llm_finetune.recipes.base import DEFAULT_SUITE, ProbeSuiteSpec
from llm_finetune.recipes.text_to_image import TextToImageCountingRecipe
from tests.conftest import DEFAULT_RECIPE, DIALOGSUM, REPO, SHARED_DATA


def as_sent(recipe) -> dict:
    """What the Prefect UI sends back: the recipe's JSON form."""
    return json.loads(json.dumps(recipe.model_dump(mode="json")))


def other_machine(tmp_path, monkeypatch):
    """A project root elsewhere holding the same layout beside it (its own shared data), as a worker's checkout."""
    root = tmp_path / "llmft"
    (tmp_path / "shared" / "data").mkdir(parents=True)
    shutil.copytree(DIALOGSUM, tmp_path / "shared" / "data" / "dialogsum")
    root.mkdir()
    monkeypatch.setattr(paths, "PROJECT_ROOT", root)
    return root


def test_json_paths_are_relative_to_the_project_root():
    recipe = load_recipe(DEFAULT_RECIPE)
    assert recipe.data.train_uri == str(DIALOGSUM / "train.jsonl")  # absolute in memory
    sent = as_sent(recipe)
    assert sent["data"]["train_uri"] == "../shared/data/dialogsum/train.jsonl"
    assert str(REPO) not in json.dumps(sent) and str(SHARED_DATA) not in json.dumps(sent)
    assert SummarizationRecipe.model_validate(sent) == recipe  # read back on the same machine: the same recipe
    assert ProbeSuiteSpec().model_dump(mode="json")["suite"] == "llm_finetune/probes/suites/instruction_following.yaml"


def test_work_dir_is_written_relative_to_the_folder_a_run_works_in():
    # work_dir is relative to the working directory, kept as given; a deployment's run works in its worker's project
    # root (the pull step), which the JSON form is relative to.
    sent = as_sent(load_recipe(DEFAULT_RECIPE, overrides=[f"work_dir={REPO / '.llmft'}"]))
    assert sent["work_dir"] == ".llmft" and SummarizationRecipe.model_validate(sent).work_dir == ".llmft"


def test_sent_recipe_reads_the_files_of_the_machine_that_runs_it(tmp_path, monkeypatch):
    sent = as_sent(load_recipe(DEFAULT_RECIPE))
    root = other_machine(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)  # the working directory plays no part
    recipe = SummarizationRecipe.model_validate(sent)
    assert recipe.data.train_uri == str(tmp_path / "shared" / "data" / "dialogsum" / "train.jsonl")
    assert Path(recipe.data.validation_uri).read_text() == (DIALOGSUM / "validation.jsonl").read_text()
    assert ProbeSuiteSpec.model_validate({"suite": "suites/mine.yaml"}).suite == str(root / "suites" / "mine.yaml")


def test_fingerprints_keep_the_absolute_path(tmp_path, monkeypatch):
    # Caches stay keyed as before; the same relative path on two machines names two machines' files.
    here = load_recipe(DEFAULT_RECIPE)
    assert here.data.model_dump(mode="json", context=FINGERPRINT_CONTEXT)["train_uri"] == here.data.train_uri
    sent = as_sent(here)
    other_machine(tmp_path, monkeypatch)
    there = SummarizationRecipe.model_validate(sent)
    assert fingerprint(there.data) != fingerprint(here.data)


def test_paths_outside_the_tree_and_uris_round_trip_unchanged(tmp_path, monkeypatch):
    mine = tmp_path / "mine.jsonl"  # a user's file outside the project's parent folder
    recipe = load_recipe(DEFAULT_RECIPE, overrides=[f"data.train_uri={mine}", "data.validation_uri=s3://b/v.jsonl",
                                                    "model.name_or_path=google/flan-t5-small", "model.tiny=null"])
    sent = as_sent(recipe)
    assert (sent["data"]["train_uri"], sent["data"]["validation_uri"]) == (str(mine), "s3://b/v.jsonl")
    other_machine(tmp_path, monkeypatch)
    back = SummarizationRecipe.model_validate(sent)
    assert (back.data.train_uri, back.data.validation_uri, back.model.name_or_path) == (
        str(mine), "s3://b/v.jsonl", "google/flan-t5-small")


def test_cli_override_inside_the_tree_is_relative_to_the_working_directory(monkeypatch):
    monkeypatch.chdir(REPO / "recipes")
    recipe = load_recipe(REPO / "recipes" / "continued_pretraining_gpt2_tiny.yaml", ContinuedPretrainingRecipe,
                         ["evaluation.out_of_domain.dialogsum.uri=mine/dialogs.jsonl"])
    uri = recipe.evaluation.out_of_domain["dialogsum"].uri
    assert uri == str(REPO / "recipes" / "mine" / "dialogs.jsonl")
    sent = as_sent(recipe)
    assert sent["evaluation"]["out_of_domain"]["dialogsum"]["uri"] == "recipes/mine/dialogs.jsonl"
    assert ContinuedPretrainingRecipe.model_validate(sent).evaluation.out_of_domain["dialogsum"].uri == uri


def test_model_folders_resolve_where_they_exist_else_stay_hub_ids(tmp_path, monkeypatch):
    recipe = load_recipe(REPO / "recipes" / "text_to_image_counting_sdxl.yaml", TextToImageCountingRecipe,
                         [f"pipeline.name_or_path={REPO / 'suites'}"])  # a folder inside the project
    sent = as_sent(recipe)
    assert (sent["pipeline"]["name_or_path"], sent["detector"]["name_or_path"]) == (
        "suites", "google/owlv2-base-patch16-ensemble")
    root = other_machine(tmp_path, monkeypatch)
    (root / "suites").mkdir()
    back = TextToImageCountingRecipe.model_validate(sent)
    assert (back.pipeline.name_or_path, back.detector.name_or_path) == (
        str(root / "suites"), "google/owlv2-base-patch16-ensemble")


def test_default_suite_is_the_package_file_in_memory():
    assert ProbeSuiteSpec().suite == str(DEFAULT_SUITE) and DEFAULT_SUITE.is_file()
