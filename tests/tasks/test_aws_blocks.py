"""AWS settings from prefect-aws blocks named in a recipe, on this module's Prefect test server and the moto server:
the run's tasks reach moto as the block's IAM user, the S3Bucket block gives the SageMaker bucket and folder and the
model packages' prefix, an unknown block name fails before any stage (the flows without training too: chat inference,
probes, text-to-image), a chat-inference run's S3 requests are signed with the block's keys, and no block named keeps
boto3's default chain."""

import importlib
import os

import boto3
import pytest
from botocore.credentials import Credentials
from prefect import flow, task

from llm_finetune.aws import client, current_session
from llm_finetune.backends.sagemaker import stage_folder
from llm_finetune.backends.sagemaker_api import S3Layout, clients_for
from llm_finetune.errors import RecipeError, TrackingUriError
from llm_finetune.recipes import ChatInferenceRecipe, SummarizationRecipe, load_recipe
from llm_finetune.recipes.probes import InstructionProbeRecipe
from llm_finetune.recipes.text_to_image import TextToImageCountingRecipe
from tasks.aws import aws_from_recipe, resolve_aws
from tasks.data import validate_data
from tests.chat_helpers import SUITES, contract_app
from tests.conftest import DIALOGSUM, small_recipe
from tests.http_helpers import serving_in_thread
from tests.mlflow_helpers import signature_checking_proxy
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
    'key_id', 'secret'}."""
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
            "key_id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


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


def test_the_bucket_block_gives_the_model_packages_prefix(team_blocks, tmp_path):
    block = f"aws.s3_bucket_block={team_blocks['bucket_block']}"
    recipe, _ = resolve_aws(small_recipe(tmp_path, "registry.sagemaker={model_package_group: g}", block))
    assert recipe.registry.sagemaker.s3_prefix == f"s3://{team_blocks['bucket']}/team/model-packages"  # its folder
    given = f"s3://{team_blocks['bucket']}/elsewhere/packages"
    recipe, _ = resolve_aws(small_recipe(tmp_path, f"registry.sagemaker={{model_package_group: g, s3_prefix: "
                                                   f"'{given}'}}", block))
    assert recipe.registry.sagemaker.s3_prefix == given  # in the block's bucket: kept as given

    with pytest.raises(RecipeError) as failure:
        aws_blocks_check(small_recipe(tmp_path, "registry.sagemaker={model_package_group: g, s3_prefix: "
                                                "'s3://another-bucket/packages'}", block))
    assert str(failure.value) == (
        "registry.sagemaker.s3_prefix ('s3://another-bucket/packages') is not in the bucket of aws.s3_bucket_block "
        f"'{team_blocks['bucket_block']}' ('{team_blocks['bucket']}'): remove registry.sagemaker.s3_prefix")
    assert not (tmp_path / "data").exists()  # validate-data never ran


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


ARN = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team"


@pytest.fixture
def no_environment_credentials(tmp_path, monkeypatch):
    """boto3's default chain finds no credentials (and the ARN check runs again)."""
    import llm_finetune.registry.mlflow_registry as registry

    monkeypatch.setattr(registry, "_READY_ARNS", set())
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(key, str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("no_environment_credentials")
def test_an_arn_tracking_uri_without_credentials_fails_before_any_stage(tmp_path):
    with pytest.raises(TrackingUriError, match=r"^MLflow tracking URI from .*: no AWS credentials to sign"):
        aws_blocks_check(small_recipe(tmp_path, f"registry.tracking_uri={ARN}"))
    assert not (tmp_path / "data").exists()  # validate-data never ran


@pytest.mark.usefixtures("no_environment_credentials")
def test_an_arn_tracking_uri_signs_with_the_credentials_block(team_blocks, tmp_path):
    # The run's MLflow requests are signed with the block's keys (tests/llm_finetune/registry/test_sagemaker_mlflow.py),
    # so the flow starts where the environment holds none.
    recipe = small_recipe(tmp_path, f"registry.tracking_uri={ARN}",
                          f"aws.credentials_block={team_blocks['credentials']}")
    assert aws_blocks_check(recipe)["caller"] == team_blocks["user_arn"]


def test_no_block_named_keeps_the_default_chain(team_blocks, moto_endpoint, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)  # the default chain's way to a stand-in
    default_caller = boto3.client("sts").get_caller_identity()["Arn"]
    assert default_caller != team_blocks["user_arn"]
    assert aws_blocks_check(small_recipe(tmp_path))["caller"] == default_caller


OTHER_FLOWS = {  # flows without training whose recipes take an `aws` section: (module, flow function, recipe type)
    "chatbot-inference": ("flows.chatbot_inference", "chatbot_inference", ChatInferenceRecipe),
    "instruction-following-probe": ("flows.instruction_following_probe", "instruction_following_probe",
                                    InstructionProbeRecipe),
    "text-to-image-counting": ("flows.text_to_image_counting", "text_to_image_counting", TextToImageCountingRecipe),
}


def other_flow(name: str, work_dir, *overrides: str):
    """One of OTHER_FLOWS and its default recipe with state under work_dir, then overrides: (flow, recipe)."""
    module_name, flow_name, recipe_type = OTHER_FLOWS[name]
    module = importlib.import_module(module_name)
    where = [f"work_dir={work_dir}", f"tracking.tracking_uri=sqlite:///{work_dir / 'mlflow.db'}"]
    return getattr(module, flow_name), load_recipe(module.DEFAULT_RECIPE_PATH, recipe_type, [*where, *overrides])


@pytest.mark.parametrize("name", list(OTHER_FLOWS))
def test_flows_without_training_fail_on_an_unknown_block_before_any_stage(name, tmp_path, prefect_server):
    run, recipe = other_flow(name, tmp_path, "aws.credentials_block=no-such-block")
    with pytest.raises(RecipeError) as failure:
        run(recipe=recipe)
    assert str(failure.value).startswith("aws.credentials_block: no AwsCredentials block named 'no-such-block' on "
                                         f"{prefect_server.api_url}; ")
    assert list(tmp_path.iterdir()) == []  # no stage ran: no model, suite, endpoint or output


def test_chatbot_inference_reads_s3_as_the_credentials_block(team_blocks, moto_endpoint, tmp_path):
    """Every AWS request of the run (its prompt suite, from s3://) is signed with the block's keys while the
    environment holds others: a front door before moto records who signed each one."""
    from prefect_aws import AwsCredentials

    suite = f"team/suites/{unique('chat')}.jsonl"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="eu-west-1").upload_file(
        str(SUITES / "chat.jsonl"), team_blocks["bucket"], suite)
    team = Credentials(team_blocks["key_id"], team_blocks["secret"])
    environment = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    assert team.access_key != environment.access_key
    with signature_checking_proxy(moto_endpoint, [team, environment], "eu-west-1", "s3") as (front, seen), \
            serving_in_thread(contract_app(lambda body: "Hello there.")) as url:
        block = unique("team-aws-front-door")
        AwsCredentials(aws_access_key_id=team.access_key, aws_secret_access_key=team.secret_key,
                       region_name="eu-west-1", aws_client_parameters={"endpoint_url": front}).save(block)
        run, recipe = other_flow(
            "chatbot-inference", tmp_path, f"aws.credentials_block={block}", "endpoint.registered_model=null",
            f"endpoint.url={url}", f"suites={{chat: {{path: 's3://{team_blocks['bucket']}/{suite}', kind: chat, "
            "max_records: 2}}", "grid.decoding=[{name: greedy}]", "grid.max_new_tokens=[8]")
        outcome = run(recipe=recipe)

    assert [(s.name, s.num_requests, s.num_errors) for s in outcome.suites] == [("chat", 2, 0)]
    assert {r.method for r in seen} >= {"HEAD", "GET"}  # the suite's object: looked up, then downloaded
    assert {r.key for r in seen} == {team.access_key}  # the block's keys, never the environment's
    assert [(r.method, r.path, r.problem) for r in seen if r.problem] == []  # signed for S3 in the block's region
