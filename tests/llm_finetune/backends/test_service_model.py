"""Every SageMaker request the project sends, built by the real builders from default recipes, passes botocore's
service model (enums, lengths, patterns); the validator catches what the service rejects; names stay unique within
the limits."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from llm_finetune.approval import ApprovalDecision
from llm_finetune.backends.images import package_image
from llm_finetune.backends.jumpstart import model_request as jumpstart_model_request
from llm_finetune.backends.model_packages import model_package_request, package_decision_request
from llm_finetune.backends.sagemaker import (
    TRAINING,
    S3Layout,
    clients_for,
    create_job,
    ensure_bucket,
    job_name,
    jumpstart_training_request,
    processing_request,
    training_request,
)
from llm_finetune.backends.sagemaker_endpoint import endpoint_config_request, model_request, resource_name
from llm_finetune.backends.service_model import checked, java_pattern, request_problems
from llm_finetune.errors import SageMakerJobError, SageMakerRequestError
from llm_finetune.recipes import SageMakerEndpointSpec, load_recipe
from llm_finetune.training.seq2seq import Seq2SeqTrainJob
from tests.conftest import DEFAULT_RECIPE
from tests.sagemaker_helpers import ROLE_ARN, jobs_spec, jumpstart_llama, package_spec, tiny_dolly_job, unique

ACCOUNT = f"sagemaker={{role_arn: '{ROLE_ARN}', bucket: llmft-jobs}}"
PACKAGE_ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/summarizer/3"
LONG = "dialogsum-flan-t5-summarizer-for-the-customer-support-team-prod"  # 62 characters


@pytest.fixture(scope="module")
def recipe():
    return load_recipe(DEFAULT_RECIPE, overrides=["training.backend=sagemaker", "data.preparation_backend=sagemaker",
                                                  ACCOUNT, "sagemaker.training.spot=true"])


def assert_accepted(operation: str, request: dict) -> None:
    assert request_problems(operation, request) == []


def test_training_and_processing_requests_are_valid(recipe):
    spec, layout = recipe.sagemaker, S3Layout(recipe.sagemaker)
    job = Seq2SeqTrainJob(base_model="google/flan-t5-base", dataset_dir="/data/prepared", output_dir="/runs/0123abcd",
                          prompt_template=recipe.data.prompt_template, params=recipe.training)
    channels = {"model": layout.input("model", "a" * 64), "data": layout.input("data", "b" * 64)}
    name = job_name(f"llmft-tr-{'c' * 16}-{'d' * 6}")
    training = training_request(name, "0123abcd", job, spec, layout, channels, layout.code("e" * 64))
    assert training["EnableManagedSpotTraining"]
    assert_accepted("CreateTrainingJob", training)
    processing = processing_request(name.replace("-tr-", "-pr-"), "0123abcd", spec, layout,
                                    {"data": layout.input("data", "b" * 64)}, layout.code("e" * 64))
    assert_accepted("CreateProcessingJob", processing)


def test_model_endpoint_and_package_requests_are_valid(moto_endpoint):
    endpoint = SageMakerEndpointSpec(endpoint_name=LONG, role_arn=ROLE_ARN)
    name = resource_name(LONG, "v3")
    package = {"ModelPackageArn": PACKAGE_ARN,
               "InferenceSpecification": {"Containers": [{"ModelDataUrl": "s3://b/k/model.tar.gz"}]}}
    assert_accepted("CreateModel", model_request(package, endpoint, name, None))
    assert_accepted("CreateModel", model_request(package, endpoint, name, jumpstart_llama()))
    assert_accepted("CreateModel", jumpstart_model_request(jumpstart_llama(), model_name=name, role_arn=ROLE_ARN))
    assert_accepted("CreateEndpointConfig", endpoint_config_request(endpoint, name))
    for operation in ("CreateEndpoint", "UpdateEndpoint"):
        assert_accepted(operation, {"EndpointName": LONG, "EndpointConfigName": name})

    spec = package_spec(moto_endpoint)
    created = model_package_request(spec, image=package_image(spec, "us-east-1"), mlflow_name="dialogsum-summarizer",
                                    mlflow_version="3",
                                    model_data_url="s3://b/k/model.tar.gz", kind="summarization",
                                    metrics_uri="s3://b/k/evaluation.json", training_fingerprint="0123abcd",
                                    metrics={"rougeL": 0.3141, "loss": -1.5})
    assert_accepted("CreateModelPackage", created)
    # Free text from a reviewer or a gate: brackets, comparisons and line breaks are outside the metadata pattern.
    decision = ApprovalDecision(approved=True, reviewer="Ana (lead)", automatic=False,
                                reason="rougeL 0.31 >= 0.25 (gate passed);\nbeats the champion's 0.29")
    update = package_decision_request({"ModelPackageArn": PACKAGE_ARN,
                                       "CustomerMetadataProperties": created["CustomerMetadataProperties"]}, decision)
    assert_accepted("UpdateModelPackage", update)
    meta = update["CustomerMetadataProperties"]
    assert meta["approval_reason"] == "rougeL 0.31 = 0.25 gate passed beats the champion s 0.29"
    assert meta["approval_reviewer"] == "Ana lead" and meta["mlflow_version"] == "3"
    assert update["ApprovalDescription"] == "Ana (lead): rougeL 0.31 >= 0.25 (gate passed); beats the champion's 0.29"


def test_jumpstart_training_request_is_valid_and_uses_an_s3_prefix_model_channel(moto_endpoint, tmp_path):
    """JumpStart's base weights (one .tar.gz) go as the SDK sends them: S3Prefix, the model content type."""
    jumpstart = jumpstart_llama()
    spec = jobs_spec(moto_endpoint, jumpstart=jumpstart, training={"spot": True, "max_runtime_s": 3600})
    clients = clients_for(spec)
    ensure_bucket(clients, spec)
    name = job_name(f"llmft-tr-{'a' * 16}-jumpstart-{'b' * 8}-{'c' * 6}")
    request = jumpstart_training_request(name, "fp", tiny_dolly_job(tmp_path), spec, S3Layout(spec), clients)
    assert_accepted("CreateTrainingJob", request)
    model = request["InputDataConfig"][0]
    assert model["ChannelName"] == "model" and model["ContentType"] == "application/x-sagemaker-model"
    assert model["DataSource"]["S3DataSource"] == {
        "S3Uri": jumpstart.training_model_uri, "S3DataType": "S3Prefix", "S3DataDistributionType": "FullyReplicated",
        "ModelAccessConfig": {"AcceptEula": True}}


def test_validator_names_each_problem_by_its_parameter_path():
    request = {
        "TrainingJobName": "llmft_tr_" + "x" * 60, "RoleArn": ROLE_ARN,
        "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
        "HyperParameters": {"job": "x" * 2501},
        "InputDataConfig": [{"ChannelName": "model", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Object", "S3Uri": "s3://b/model.tar.gz"}}}],
        "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
        "ResourceConfig": {"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "Tags": [{"Key": "llmft:fingerprint", "Value": "a (b)"}],
    }
    problems = request_problems("create_training_job", request)
    assert problems == [
        "TrainingJobName: length 69 is over the maximum 63",
        f"TrainingJobName: {request['TrainingJobName']!r} does not match the pattern "
        "'[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}'",
        "HyperParameters.job: length 2501 is over the maximum 2500",
        "InputDataConfig[0].DataSource.S3DataSource.S3DataType: 'S3Object' not one of "
        "['ManifestFile', 'S3Prefix', 'AugmentedManifestFile', 'Converse']",
        "Tags[0].Value: 'a (b)' does not match the pattern '([\\\\p{L}\\\\p{Z}\\\\p{N}_.:/=+\\\\-@]*)'",
    ]
    with pytest.raises(SageMakerRequestError, match=r"would reject this CreateTrainingJob request \(5 problem\(s\)\); "
                                                    r"nothing was sent:\n  - TrainingJobName: length 69"):
        checked("CreateTrainingJob", request)
    assert request_problems("CreateEndpoint", {"EndpointName": "x", "Extra": 1}) == [
        "request: required parameter 'EndpointConfigName' is missing",
        "request: unknown parameter 'Extra' (valid: EndpointName, EndpointConfigName, DeploymentConfig, Tags)"]
    over = {"ModelPackageArn": PACKAGE_ARN, "CustomerMetadataProperties": {"reason": "y" * 257}}
    assert request_problems("UpdateModelPackage", over) == [
        "CustomerMetadataProperties.reason: length 257 is over the maximum 256"]


@pytest.mark.parametrize(("java", "value", "matches"), [
    (r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", "a-b", True),
    (r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", "a-b-", False),  # the whole value, not a prefix of it
    (r"([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)${1,256}", "Größe 2 m", True),  # Unicode letters; a quantified anchor
    (r"([\p{L}\p{Z}\p{N}_.:\/=+\-@]*)${1,256}", "a, b", False),
    (r"[\w+=,.@*-]+", "é", False),  # Java's \w is ASCII
    (r"arn:[\p{Alnum}\-]+:x", "arn:aé:x", False),  # so is \p{Alnum}
    (r".*", "one\ntwo", False),  # Java's . stops at line terminators
    (r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\t]*", "ok \U0001F600", True),  # a surrogate-pair range
    (r"[^ ~^:?*\[]+", "a*b", False),
])
def test_java_patterns_keep_their_meaning(java, value, matches):
    import regex

    assert (regex.fullmatch(java_pattern(java), value) is not None) == matches


def test_long_names_stay_unique_and_keep_the_whole_timestamp():
    v3, v4 = resource_name(LONG, "v3"), resource_name(LONG, "v4")
    assert v3 != v4 and len(v3) <= 63 and len(v4) <= 63  # before: both cut to the same 63 characters
    assert resource_name("summarizer", "v3") == "summarizer-v3"  # short names unchanged

    one, two = (job_name(f"llmft-tr-{'a' * 16}-jumpstart-{suffix}-abcdef") for suffix in ("11111111", "22222222"))
    assert len(one) <= 63 and one != two
    stamp = datetime.strptime(one[-14:], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    assert abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 60  # seconds intact: unique per second
    assert re.fullmatch(r"llmft-tr-a{16}-jumpstart-\d{3}-[0-9a-f]{8}-\d{14}", one)
    assert job_name("llmft-pr-0123").startswith("llmft-pr-0123-")
    for name in (v3, one):
        assert request_problems("CreateEndpoint", {"EndpointName": name, "EndpointConfigName": name}) == []


def test_resource_in_use_is_ours_only_for_the_same_request(moto_endpoint, recipe):
    spec = jobs_spec(moto_endpoint)
    clients = clients_for(spec)
    request = {
        "TrainingJobName": unique("dup"), "RoleArn": ROLE_ARN,
        "AlgorithmSpecification": {"TrainingImage": f"123456789012.dkr.ecr.{spec.region}.amazonaws.com/own:1",
                                   "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
        "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600}, "Tags": [{"Key": "llmft:fingerprint", "Value": "fp1"}]}
    create_job(clients, TRAINING, request)
    create_job(clients, TRAINING, request)  # a retried create whose first attempt went through: that job
    other = {**request, "Tags": [{"Key": "llmft:fingerprint", "Value": "fp2"}]}
    with pytest.raises(SageMakerJobError, match=rf"job {request['TrainingJobName']} already exists and is not this "
                                                r"request's \(Completed"):
        create_job(clients, TRAINING, other)
