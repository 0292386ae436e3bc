"""The recipe fields that choose SageMaker: checked when the recipe loads, with the field named."""

import pytest

from llm_finetune.errors import RecipeError
from llm_finetune.recipes import DialogsumPipelineRecipe, load_recipe
from tests.conftest import DEFAULT_RECIPE, REPO


def test_sagemaker_endpoint_needs_its_settings_and_a_model_package():
    with pytest.raises(RecipeError, match="endpoint.target 'sagemaker' needs an endpoint.sagemaker section"):
        load_recipe(DEFAULT_RECIPE, overrides=["endpoint.target=sagemaker"])
    with pytest.raises(RecipeError, match="deploys an approved model package: set registry.sagemaker"):
        load_recipe(DEFAULT_RECIPE, overrides=["endpoint.target=sagemaker", "endpoint.sagemaker={role_arn: r}"])
    recipe = load_recipe(DEFAULT_RECIPE, overrides=[
        "endpoint.target=sagemaker", "endpoint.sagemaker={role_arn: r}",
        "registry.sagemaker={model_package_group: g, s3_prefix: 's3://b/p', image_uri: i}"])
    assert recipe.endpoint.sagemaker.instance_type == "ml.g5.xlarge" and recipe.endpoint.sagemaker.endpoint_name is None
    assert load_recipe(DEFAULT_RECIPE).endpoint.target == "local"  # the default stays local


def test_pipeline_recipe_loads_and_checks_its_inputs():
    path = REPO / "recipes" / "dialogsum_sagemaker_pipeline.yaml"
    recipe = load_recipe(path, DialogsumPipelineRecipe)
    assert recipe.input_data_uri() == "s3://my-llmft-bucket/dialogsum/" and recipe.model.name_or_path
    with pytest.raises(RecipeError, match="must be s3:// files in one folder"):
        load_recipe(path, DialogsumPipelineRecipe, ["data.validation_uri=s3://other/validation.jsonl"])
    with pytest.raises(RecipeError, match="approval.min_metrics needs 'rouge2'"):
        load_recipe(path, DialogsumPipelineRecipe, ["pipeline.condition_metric=rouge2"])
    with pytest.raises(RecipeError, match="registry.sagemaker is required"):
        load_recipe(path, DialogsumPipelineRecipe, ["registry.sagemaker=null"])
