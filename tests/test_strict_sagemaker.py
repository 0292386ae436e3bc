"""The moto stand-in refuses, as SageMaker does, what moto alone stores (tests/strict_sagemaker.py)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from llm_finetune.aws import sagemaker_client
from tests.sagemaker_helpers import ROLE_ARN, unique

DLC = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-training:"
       "2.9.0-transformers5.3.0-gpu-py312-cu130-ubuntu22.04")


def training(**changes) -> dict:
    request = {
        "TrainingJobName": unique("strict"), "RoleArn": ROLE_ARN,
        "AlgorithmSpecification": {"TrainingImage": DLC, "TrainingInputMode": "File"},
        "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
        "ResourceConfig": {"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    return {**request, **changes}


def refused(sm, request: dict, operation: str = "create_training_job") -> tuple[str, str]:
    with pytest.raises(ClientError) as e:
        getattr(sm, operation)(**request)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def test_requests_the_service_rejects_are_refused(moto_endpoint):
    sm = sagemaker_client(moto_endpoint)
    request = training(HyperParameters={"job": "x" * 2501, "k" * 257: "1"})
    request["InputDataConfig"] = [{"ChannelName": "model", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Object", "S3Uri": "s3://b/model.tar.gz"}}}]
    code, message = refused(sm, request)
    assert code == "ValidationException"
    for problem in ("HyperParameters.job: length 2501 is over the maximum 2500",
                    f"HyperParameters (key: {'k' * 257}): length 257 is over the maximum 256",
                    "InputDataConfig[0].DataSource.S3DataSource.S3DataType: 'S3Object' not one of"):
        assert problem in message
    assert refused(sm, {"EndpointName": "a_b", "EndpointConfigName": "c"}, "create_endpoint")[0] == \
        "ValidationException"

    spot = {"EnableManagedSpotTraining": True}
    assert refused(sm, training(**spot)) == (
        "ValidationException", "managed spot training needs StoppingCondition.MaxWaitTimeInSeconds")
    short_wait = {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 1800}
    assert refused(sm, training(**spot, StoppingCondition=short_wait))[1] == (
        "MaxWaitTimeInSeconds (1800) must be at least MaxRuntimeInSeconds (3600)")
    assert refused(sm, training(StoppingCondition={**short_wait, "MaxWaitTimeInSeconds": 7200}))[1] == (
        "MaxWaitTimeInSeconds is only allowed with managed spot training")


@pytest.mark.parametrize(("image", "accepted"), [
    (DLC, True),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/my-trainer:1", True),  # the caller's own ECR
    ("763104351884.dkr.ecr.eu-west-1.amazonaws.com/huggingface-pytorch-training:2.9.0", False),  # another region
    ("763104351884.dkr.ecr.us-east-1.amazonaws.com/no-such-repository:1", False),
    ("210987654321.dkr.ecr.us-east-1.amazonaws.com/my-trainer:1", False),  # someone else's account
    ("huggingface/transformers-pytorch-gpu:latest", False),  # Docker Hub: SageMaker pulls from ECR only
])
def test_training_and_processing_images_come_from_the_sdks_tables_or_own_ecr(moto_endpoint, image, accepted):
    sm = sagemaker_client(moto_endpoint)
    processing = {"ProcessingJobName": unique("strict"), "RoleArn": ROLE_ARN, "AppSpecification": {"ImageUri": image},
                  "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                                            "VolumeSizeInGB": 30}}}
    for operation, request in (("create_training_job", training(AlgorithmSpecification={
            "TrainingImage": image, "TrainingInputMode": "File"})), ("create_processing_job", processing)):
        if accepted:
            getattr(sm, operation)(**request)
        else:
            code, message = refused(sm, request, operation)
            assert code == "ValidationException" and message.startswith(f"image {image!r} is neither one of")


def test_job_names_are_never_reused(moto_endpoint):
    sm = sagemaker_client(moto_endpoint)
    request = training()
    sm.create_training_job(**request)
    code, message = refused(sm, {**request, "HyperParameters": {"other": "1"}})
    assert code == "ResourceInUse" and "a training job with this name already exists" in message
    assert sm.describe_training_job(TrainingJobName=request["TrainingJobName"]).get("HyperParameters") in (None, {})
