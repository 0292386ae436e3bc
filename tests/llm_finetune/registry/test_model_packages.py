"""The SageMaker Model Package Group mirror, against a real moto server."""

import json
import tarfile

import pytest

from llm_finetune.approval import ApprovalDecision
from llm_finetune.aws import s3_client, sagemaker_client
from llm_finetune.backends.model_packages import (
    APPROVED,
    PENDING,
    REJECTED,
    record_package_decision,
    register_model_package,
    split_s3_uri,
)
from llm_finetune.backends.sagemaker_endpoint import deploy_model_package
from llm_finetune.errors import ApprovalRequiredError
from tests.sagemaker_helpers import endpoint_spec, package_spec

METRICS = {"rougeL": 0.1234, "rouge1": 0.2}


def mirror(moto_endpoint, spec, model_dir, version="1", fingerprint="fp-1"):
    return register_model_package(sagemaker_client(moto_endpoint), s3_client(moto_endpoint), spec,
                                  mlflow_name="summarizer", mlflow_version=version, model_source=model_dir,
                                  training_fingerprint=fingerprint, metrics=METRICS)


def test_each_version_becomes_one_pending_package(moto_endpoint, trained_tiny_model, tmp_path):
    sm, s3 = sagemaker_client(moto_endpoint), s3_client(moto_endpoint)
    spec = package_spec(moto_endpoint)
    package = mirror(moto_endpoint, spec, trained_tiny_model["finetuned"])
    assert not package.reused and package.status == PENDING

    described = sm.describe_model_package(ModelPackageName=package.arn)
    container = described["InferenceSpecification"]["Containers"][0]
    assert container["Image"] == spec.image_uri and container["Environment"] == {"HF_TASK": "text2text-generation"}
    assert container["ModelDataUrl"] == f"{spec.s3_prefix}/fp-1/model.tar.gz"
    assert described["InferenceSpecification"]["SupportedRealtimeInferenceInstanceTypes"] == ["ml.g4dn.xlarge"]
    meta = described["CustomerMetadataProperties"]
    assert (meta["mlflow_model"], meta["mlflow_version"], meta["metric.rougeL"]) == ("summarizer", "1", "0.1234")

    bucket, key = split_s3_uri(container["ModelDataUrl"])  # the registered model folder, files at the archive root
    s3.download_file(bucket, key, str(tmp_path / "model.tar.gz"))
    with tarfile.open(tmp_path / "model.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"config.json", "model.safetensors", "llmft_prompt.json"} <= names
    statistics = described["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    bucket, key = split_s3_uri(statistics)
    assert json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())["rougeL"] == {"value": 0.1234}

    again = mirror(moto_endpoint, spec, trained_tiny_model["finetuned"])  # a re-run finds its package
    assert again.reused and again.arn == package.arn
    second = mirror(moto_endpoint, spec, trained_tiny_model["base"], version="2", fingerprint="fp-2")
    assert second.arn != package.arn and second.version == package.version + 1
    listed = sm.list_model_packages(ModelPackageGroupName=spec.model_package_group)["ModelPackageSummaryList"]
    assert len(listed) == 2


def test_decision_recorded_with_reviewer_and_reason_and_never_overwritten(moto_endpoint, trained_tiny_model):
    sm = sagemaker_client(moto_endpoint)
    spec = package_spec(moto_endpoint)
    approved = mirror(moto_endpoint, spec, trained_tiny_model["finetuned"])
    rejected = mirror(moto_endpoint, spec, trained_tiny_model["base"], version="2", fingerprint="fp-2")

    yes = ApprovalDecision(approved=True, reviewer="ana", reason="rougeL up 0.05", automatic=False)
    no = ApprovalDecision(approved=False, reviewer="bo", reason="worse than the champion", automatic=False)
    assert record_package_decision(sm, approved.arn, yes) == APPROVED
    assert record_package_decision(sm, rejected.arn, no) == REJECTED

    described = sm.describe_model_package(ModelPackageName=approved.arn)
    assert described["ModelApprovalStatus"] == APPROVED
    assert described["ApprovalDescription"] == "ana: rougeL up 0.05"
    meta = described["CustomerMetadataProperties"]
    assert (meta["approval_reviewer"], meta["approval_reason"], meta["approval_automatic"]) == (
        "ana", "rougeL up 0.05", "false")
    assert meta["mlflow_version"] == "1"  # what registration wrote is kept
    described = sm.describe_model_package(ModelPackageName=rejected.arn)
    assert described["ModelApprovalStatus"] == REJECTED
    assert described["ApprovalDescription"] == "bo: worse than the champion"

    # a later decision does not overwrite the recorded one
    assert record_package_decision(sm, rejected.arn, yes) == REJECTED
    assert sm.describe_model_package(ModelPackageName=rejected.arn)["ApprovalDescription"].startswith("bo:")


@pytest.mark.parametrize("decision", [None, False])
def test_only_an_approved_package_is_deployed(moto_endpoint, trained_tiny_model, decision):
    sm = sagemaker_client(moto_endpoint)
    package = mirror(moto_endpoint, package_spec(moto_endpoint), trained_tiny_model["finetuned"])
    if decision is not None:
        record_package_decision(sm, package.arn, ApprovalDecision(approved=decision, reviewer="qa", reason="no",
                                                                  automatic=False))
    spec = endpoint_spec()
    status = PENDING if decision is None else REJECTED
    with pytest.raises(ApprovalRequiredError, match=f"is '{status}', not 'Approved': refusing to deploy"):
        deploy_model_package(sm, package.arn, spec, endpoint_name=spec.endpoint_name, version="1")
    # refused before anything was created
    assert not [m for m in sm.list_models()["Models"] if m["ModelName"].startswith(spec.endpoint_name)]
    assert not [e for e in sm.list_endpoints()["Endpoints"] if e["EndpointName"] == spec.endpoint_name]
