"""The recipe fields that choose SageMaker: checked when the recipe loads, with the field named."""

import pytest

from llm_finetune.errors import RecipeError
from llm_finetune.recipes import DialogsumPipelineRecipe, InstructionRecipe, load_recipe
from tests.conftest import DEFAULT_RECIPE, REPO

PACKAGE = "registry.sagemaker={model_package_group: g, s3_prefix: 's3://b/p', image_uri: i}"
JOBS = "sagemaker={role_arn: jobs-role, bucket: b}"


def test_sagemaker_endpoint_needs_a_role_and_a_model_package():
    with pytest.raises(RecipeError, match="needs an execution role: set endpoint.sagemaker.role_arn or "
                                          "sagemaker.role_arn"):
        load_recipe(DEFAULT_RECIPE, overrides=["endpoint.target=sagemaker", PACKAGE])
    with pytest.raises(RecipeError, match="deploys an approved model package: set registry.sagemaker"):
        load_recipe(DEFAULT_RECIPE, overrides=["endpoint.target=sagemaker", "endpoint.sagemaker={role_arn: r}"])
    recipe = load_recipe(DEFAULT_RECIPE, overrides=[
        "endpoint.target=sagemaker", "endpoint.sagemaker={role_arn: r}",
        "registry.sagemaker={model_package_group: g, s3_prefix: 's3://b/p', image_uri: i}"])
    assert recipe.endpoint.sagemaker.instance_type == "ml.g5.xlarge" and recipe.endpoint.sagemaker.endpoint_name is None
    assert load_recipe(DEFAULT_RECIPE).endpoint.target == "local"  # the default stays local


def test_endpoint_role_defaults_to_the_jobs_role():
    recipe = load_recipe(DEFAULT_RECIPE, overrides=["endpoint.target=sagemaker", PACKAGE, JOBS])
    assert recipe.endpoint.sagemaker.role_arn == "jobs-role" and recipe.sagemaker.role_arn == "jobs-role"
    recipe = load_recipe(DEFAULT_RECIPE, overrides=["endpoint.target=sagemaker", PACKAGE, JOBS,
                                                    "endpoint.sagemaker={role_arn: model-role}"])
    assert recipe.endpoint.sagemaker.role_arn == "model-role"  # set on its own, it wins


def test_jumpstart_section_is_checked_at_load():
    from tests.sagemaker_helpers import JUMPSTART_RECIPE

    with pytest.raises(RecipeError, match=r"sagemaker.jumpstart.accept_eula: JumpStart model "
                                          r"'meta-textgeneration-llama-2-7b' is gated behind a EULA"):
        load_recipe(JUMPSTART_RECIPE, InstructionRecipe)
    accepted = "sagemaker.jumpstart.accept_eula=true"
    with pytest.raises(RecipeError, match="sagemaker.jumpstart is set but nothing uses it"):
        load_recipe(JUMPSTART_RECIPE, InstructionRecipe, [accepted, "training.backend=local", "endpoint.target=local"])
    with pytest.raises(RecipeError, match="set sagemaker.jumpstart.training_image_uri, "
                                          "sagemaker.jumpstart.training_script_uri"):
        load_recipe(JUMPSTART_RECIPE, InstructionRecipe, [accepted, "sagemaker.jumpstart.training_image_uri=null",
                                                          "sagemaker.jumpstart.training_script_uri=null"])
    # Serving only (a model trained here, deployed in JumpStart's container) needs no training fields.
    recipe = load_recipe(JUMPSTART_RECIPE, InstructionRecipe, [accepted, "training.backend=local",
                                                               "sagemaker.jumpstart.training_image_uri=null"])
    assert recipe.sagemaker.jumpstart.accept_eula and recipe.endpoint.sagemaker.role_arn == recipe.sagemaker.role_arn


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


def test_the_jobs_bucket_is_named_in_the_recipe_or_by_an_s3_bucket_block():
    with pytest.raises(RecipeError, match="sagemaker.bucket: set the S3 bucket, or name an S3Bucket block in "
                                          "aws.s3_bucket_block"):
        load_recipe(DEFAULT_RECIPE, overrides=["sagemaker={role_arn: r}"])
    recipe = load_recipe(DEFAULT_RECIPE, overrides=["sagemaker={role_arn: r}", "aws.s3_bucket_block=team-bucket"])
    assert recipe.sagemaker.bucket is None and recipe.aws.credentials_block is None  # filled in when the flow starts
    assert load_recipe(DEFAULT_RECIPE).aws.model_dump() == {"credentials_block": None, "s3_bucket_block": None}


def test_the_model_packages_prefix_is_named_in_the_recipe_or_by_an_s3_bucket_block():
    group = "registry.sagemaker={model_package_group: g}"
    with pytest.raises(RecipeError, match="registry.sagemaker.s3_prefix: set s3://bucket/prefix for the model "
                                          "packages' files, or name an S3Bucket block in aws.s3_bucket_block"):
        load_recipe(DEFAULT_RECIPE, overrides=[group])
    recipe = load_recipe(DEFAULT_RECIPE, overrides=[group, "aws.s3_bucket_block=team-bucket"])
    assert recipe.registry.sagemaker.s3_prefix is None  # filled in when the flow starts
    with pytest.raises(RecipeError, match=r"registry.sagemaker.s3_prefix.*should match pattern"):
        load_recipe(DEFAULT_RECIPE, overrides=["registry.sagemaker={model_package_group: g, s3_prefix: bucket/p}"])
