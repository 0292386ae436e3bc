"""AWS settings from prefect-aws blocks named in a recipe, on this module's Prefect test server and the moto server:
the run's tasks reach moto as the block's IAM user, the S3Bucket block gives the SageMaker bucket and folder, an
unknown block name fails before any stage, and no block named keeps boto3's default chain."""

import boto3
import pytest
from prefect import flow, task

from llm_finetune.aws import client, current_session
from llm_finetune.backends.sagemaker import stage_folder
from llm_finetune.backends.sagemaker_api import S3Layout, clients_for
from llm_finetune.errors import RecipeError, TrackingUriError
from llm_finetune.recipes import SummarizationRecipe
from tasks.aws import aws_from_recipe
from tasks.data import validate_data
from tests.conftest import DIALOGSUM, small_recipe
from tests.sagemaker_helpers import ROLE_ARN, unique

pytestmark = pytest.mark.usefixtures("prefect_server")


@task
def caller_arn() -> str:
    """Who AWS (here moto's STS) says made the request, from inside a task."""
    return client("sts").get_caller_identity()["Arn"]


@flow(name="aws-blocks-check")
@aws_from_recipe
def aws_blocks_check(recipe: SummarizationRecipe, staged: str | None = None) -> dict:
    validated = validate_data(recipe.data, recipe.work_dir)  # s3:// data read by a real task through the session
    result = {"caller": caller_arn(), "records": validated.num_records}
    if staged is not None:
        layout = S3Layout(recipe.sagemaker)
        result["base"] = layout.base
        result["staged"] = stage_folder(clients_for(recipe.sagemaker), layout, "check", staged)
    return result


@pytest.fixture(scope="module")
def team_blocks(moto_endpoint):
    """An IAM user on moto, an AwsCredentials block with its keys (moto as its endpoint), an S3Bucket block on a new
    bucket holding the DialogSum sample under its folder: {'credentials', 'bucket_block', 'bucket', 'user_arn',
    'secret'}."""
    from prefect_aws import AwsCredentials, S3Bucket

    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1")
    user = iam.create_user(UserName=unique("llmft-team"))["User"]
    key = iam.create_access_key(UserName=user["UserName"])["AccessKey"]
    credentials = AwsCredentials(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                                 region_name="eu-west-1", aws_client_parameters={"endpoint_url": moto_endpoint})
    credentials_name = unique("team-aws")
    credentials.save(credentials_name)
    bucket = unique("llmft-team")
    s3 = credentials.get_boto3_session().client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for split in ("train", "validation"):
        s3.upload_file(str(DIALOGSUM / f"{split}.jsonl"), bucket, f"team/data/{split}.jsonl")
    bucket_name = unique("team-bucket")
    S3Bucket(bucket_name=bucket, bucket_folder="team", credentials=credentials).save(bucket_name)
    return {"credentials": credentials_name, "bucket_block": bucket_name, "bucket": bucket, "user_arn": user["Arn"],
            "secret": key["SecretAccessKey"]}


def s3_data(bucket: str) -> tuple[str, ...]:
    return (f"data.train_uri=s3://{bucket}/team/data/train.jsonl",
            f"data.validation_uri=s3://{bucket}/team/data/validation.jsonl")


def test_named_blocks_give_the_run_its_identity_and_bucket(team_blocks, moto_endpoint, tmp_path):
    prefix = unique("run")
    recipe = small_recipe(tmp_path, *s3_data(team_blocks["bucket"]),
                          f"aws.credentials_block={team_blocks['credentials']}",
                          f"aws.s3_bucket_block={team_blocks['bucket_block']}",
                          f"sagemaker={{role_arn: '{ROLE_ARN}', prefix: {prefix}, region: eu-west-1, "
                          f"endpoint_url: '{moto_endpoint}', stand_in: true}}")
    assert recipe.sagemaker.bucket is None  # the block names it
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "part.txt").write_text("staged through the block's bucket\n")

    result = aws_blocks_check(recipe, str(tmp_path / "inputs"))

    assert result["caller"] == team_blocks["user_arn"]  # moto saw the block's access key, not the environment's
    lines = {split: len((DIALOGSUM / f"{split}.jsonl").read_text().splitlines()) for split in ("train", "validation")}
    assert result["records"] == lines  # the sample, read from s3:// through the block's endpoint and keys
    assert result["base"] == f"s3://{team_blocks['bucket']}/team/{prefix}"
    assert result["staged"].startswith(f"s3://{team_blocks['bucket']}/team/{prefix}/inputs/check/")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-west-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=team_blocks["bucket"], Prefix=f"team/{prefix}/")["Contents"]]
    assert any(k.endswith("/part.txt") for k in keys) and any(k.endswith(".complete") for k in keys)
    assert team_blocks["secret"] not in recipe.model_dump_json()  # the recipe (MLflow params, flow run) names blocks
    assert current_session() is None  # the session ends with the run


def test_the_bucket_blocks_credentials_serve_when_no_credentials_block_is_named(team_blocks, tmp_path):
    recipe = small_recipe(tmp_path, *s3_data(team_blocks["bucket"]), f"aws.s3_bucket_block={team_blocks['bucket_block']}")
    assert aws_blocks_check(recipe)["caller"] == team_blocks["user_arn"]


def test_an_unknown_block_fails_before_any_stage(tmp_path, prefect_server):
    recipe = small_recipe(tmp_path, "aws.credentials_block=no-such-block")
    with pytest.raises(RecipeError) as failure:
        aws_blocks_check(recipe)
    assert str(failure.value) == (
        f"aws.credentials_block: no AwsCredentials block named 'no-such-block' on {prefect_server.api_url}; create it "
        "(Prefect UI: Blocks, or AwsCredentials(...).save('no-such-block')) or remove aws.credentials_block to use the "
        "default AWS credential chain")
    assert not (tmp_path / "data").exists()  # validate-data never ran


def test_an_arn_tracking_uri_without_credentials_fails_before_any_stage(tmp_path, monkeypatch):
    import llm_finetune.registry.mlflow_registry as registry

    monkeypatch.setattr(registry, "_READY_ARNS", set())
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(key, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    arn = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team"
    with pytest.raises(TrackingUriError, match=r"^MLflow tracking URI from .*: no AWS credentials to sign"):
        aws_blocks_check(small_recipe(tmp_path, f"registry.tracking_uri={arn}"))
    assert not (tmp_path / "data").exists()  # validate-data never ran


def test_no_block_named_keeps_the_default_chain(team_blocks, moto_endpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)  # the default chain's way to a stand-in
    default_caller = boto3.client("sts").get_caller_identity()["Arn"]
    assert default_caller != team_blocks["user_arn"]
    assert aws_blocks_check(small_recipe(tmp_path))["caller"] == default_caller
