"""SageMaker Model Package Group mirror of the MLflow registry (which stays the registry of record).

Each registered version becomes one model package (`PendingManualApproval`): inference specification (image,
model.tar.gz in S3, HF_TASK), evaluation metrics (a JSON statistics file and metadata), and the MLflow name, version
and training fingerprint as metadata, by which a re-run finds it again. The approval gate sets `Approved` or
`Rejected` with the reviewer and reason; a SageMaker deployment calls `require_approved_package` first.
Plain boto3: the sagemaker SDK's ModelPackage.create has a KeyError bug (STACK-NOTES).
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import regex
from botocore.exceptions import ClientError
from pydantic import BaseModel

from llm_finetune.approval import ApprovalDecision
from llm_finetune.backends.images import package_image
from llm_finetune.backends.service_model import checked
from llm_finetune.errors import ApprovalRequiredError, RecipeError
from llm_finetune.kinds import served_kind
from llm_finetune.recipes import SageMakerModelPackageSpec
from llm_finetune.registry.mlflow_registry import RELEASE_REASON, RELEASE_STATUS, ROLLED_BACK

PENDING, APPROVED, REJECTED = "PendingManualApproval", "Approved", "Rejected"
MODEL_ARCHIVE = "model.tar.gz"
METADATA_VALUE_MAX = 256  # SageMaker CustomerMetadataProperties values are at most 256 characters
_METADATA_FORBIDDEN = regex.compile(r"[^\p{L}\p{Z}\p{N}_.:/=+\-@]+")


class ModelPackage(BaseModel):
    arn: str
    group: str
    version: int
    model_data_url: str
    status: str
    reused: bool = False


def split_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


def _exists(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as e:
        if e.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def upload_model_archive(s3, model_dir: str | Path, s3_uri: str) -> str:
    """The model folder as model.tar.gz (files at the archive root, as SageMaker containers expect) at `s3_uri`;
    an archive already there is kept (the key names one trained model)."""
    bucket, key = split_s3_uri(s3_uri)
    if not _exists(s3, bucket, key):
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / MODEL_ARCHIVE
            with tarfile.open(archive, "w:gz") as tar:
                for path in sorted(Path(model_dir).iterdir()):
                    tar.add(path, arcname=path.name)
            s3.upload_file(str(archive), bucket, key)
    return s3_uri


def ensure_group(sm, group: str, description: str) -> None:
    try:
        sm.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError as e:
        if e.response["Error"]["Code"] != "ValidationException":
            raise
        sm.create_model_package_group(**checked("CreateModelPackageGroup", {
            "ModelPackageGroupName": group, "ModelPackageGroupDescription": description[:1024]}))


def _package(described: dict, reused: bool) -> ModelPackage:
    container = described["InferenceSpecification"]["Containers"][0]
    return ModelPackage(arn=described["ModelPackageArn"], group=described["ModelPackageGroupName"],
                        version=described.get("ModelPackageVersion", 0), model_data_url=container["ModelDataUrl"],
                        status=described["ModelApprovalStatus"], reused=reused)


def find_package(sm, group: str, mlflow_name: str, mlflow_version: str) -> ModelPackage | None:
    """The package already mirroring this MLflow version, if any."""
    for page in sm.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group):
        for summary in page["ModelPackageSummaryList"]:
            described = sm.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            meta = described.get("CustomerMetadataProperties") or {}
            if meta.get("mlflow_model") == mlflow_name and meta.get("mlflow_version") == str(mlflow_version):
                return _package(described, reused=True)
    return None


def register_model_package(
    sm,
    s3,
    spec: SageMakerModelPackageSpec,
    *,
    mlflow_name: str,
    mlflow_version: str,
    model_source: str,
    training_fingerprint: str,
    metrics: dict[str, float],
) -> ModelPackage:
    """Mirror one MLflow version as a model package, or return the package that already mirrors it.

    `model_source` is the trained model folder (uploaded as model.tar.gz under the spec's s3_prefix, keyed by the
    training fingerprint) or an s3:// URI of a model.tar.gz (a model trained on SageMaker), used as it is.
    """
    ensure_group(sm, spec.model_package_group, f"Mirror of MLflow registered model '{mlflow_name}'")
    existing = find_package(sm, spec.model_package_group, mlflow_name, mlflow_version)
    if existing is not None:
        return existing
    if spec.s3_prefix is None:  # a flow fills it in from aws.s3_bucket_block when it starts (tasks.aws)
        raise RecipeError("registry.sagemaker.s3_prefix is unset: set it, or name an S3Bucket block in "
                          "aws.s3_bucket_block and run the flow, which fills it in")
    prefix = spec.s3_prefix.rstrip("/")
    bucket, _ = split_s3_uri(prefix + "/")
    if model_source.startswith("s3://"):
        model_data_url, kind = model_source, None
    else:
        model_data_url = upload_model_archive(s3, model_source, f"{prefix}/{training_fingerprint}/{MODEL_ARCHIVE}")
        kind = served_kind(model_source)
    metrics_uri = f"{prefix}/{training_fingerprint}/evaluation.json"
    _, metrics_key = split_s3_uri(metrics_uri)
    s3.put_object(Bucket=bucket, Key=metrics_key, ContentType="application/json",
                  Body=json.dumps({name: {"value": value} for name, value in metrics.items()}, indent=2).encode())
    request = model_package_request(spec, image=package_image(spec, sm.meta.region_name), mlflow_name=mlflow_name,
                                    mlflow_version=mlflow_version,
                                    model_data_url=model_data_url, kind=kind, metrics_uri=metrics_uri,
                                    training_fingerprint=training_fingerprint, metrics=metrics)
    arn = sm.create_model_package(**checked("CreateModelPackage", request))["ModelPackageArn"]
    return _package(sm.describe_model_package(ModelPackageName=arn), reused=False)


def model_package_request(spec: SageMakerModelPackageSpec, *, image: str, mlflow_name: str, mlflow_version: str,
                          model_data_url: str, kind: str | None, metrics_uri: str, training_fingerprint: str,
                          metrics: dict[str, float]) -> dict:
    """CreateModelPackage arguments: the inference container, the metrics file, the MLflow identity as metadata."""
    environment = {**({"HF_TASK": kind} if kind else {}), **spec.environment}
    metadata = {"mlflow_model": metadata_value(mlflow_name), "mlflow_version": str(mlflow_version),
                "training_fingerprint": metadata_value(training_fingerprint)}
    metadata |= {f"metric.{k}": f"{v:.4f}" for k, v in sorted(metrics.items())}
    return {
        "ModelPackageGroupName": spec.model_package_group,
        "ModelPackageDescription": f"MLflow '{mlflow_name}' version {mlflow_version}",
        "InferenceSpecification": {
            "Containers": [{"Image": image, "ModelDataUrl": model_data_url, "Environment": environment}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
            "SupportedRealtimeInferenceInstanceTypes": spec.inference_instance_types,
        },
        "ModelMetrics": {"ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": metrics_uri}}},
        "ModelApprovalStatus": PENDING,
        "CustomerMetadataProperties": metadata,
    }


def metadata_value(text: str) -> str:
    """Text as a CustomerMetadataProperties value: letters, digits, spaces and `_.:/=+-@` only (the service's
    pattern; other characters become a space, runs of spaces one), at most 256 characters, never empty."""
    return " ".join(_METADATA_FORBIDDEN.sub(" ", text).split())[:METADATA_VALUE_MAX].rstrip() or "-"


def record_package_decision(sm, arn: str, decision: ApprovalDecision) -> str:
    """Set `Approved`/`Rejected` with the reviewer and reason; a package already decided keeps its status (a
    decision is never overwritten), except one a rolled-back release rejected, which takes the decision of record
    again (a re-run releases it). Returns the package's status."""
    described = sm.describe_model_package(ModelPackageName=arn)
    meta = described.get("CustomerMetadataProperties") or {}
    rolled_back = described["ModelApprovalStatus"] == REJECTED and meta.get(RELEASE_STATUS) == ROLLED_BACK
    if described["ModelApprovalStatus"] != PENDING and not rolled_back:
        return described["ModelApprovalStatus"]
    request = package_decision_request(described, decision)
    sm.update_model_package(**checked("UpdateModelPackage", request))
    return request["ModelApprovalStatus"]


def package_decision_request(described: dict, decision: ApprovalDecision) -> dict:
    """UpdateModelPackage arguments recording the decision on the described package."""
    # Send the whole metadata back: UpdateModelPackage must not drop what create wrote (a stand-in might replace it).
    metadata = {**(described.get("CustomerMetadataProperties") or {}),
                "approval_reviewer": metadata_value(decision.reviewer),
                "approval_reason": metadata_value(decision.reason),
                "approval_automatic": str(decision.automatic).lower(),
                "approval_decided_at": decision.decided_at.isoformat()}
    return {"ModelPackageArn": described["ModelPackageArn"],
            "ModelApprovalStatus": APPROVED if decision.approved else REJECTED,
            "ApprovalDescription": approval_description(f"{decision.reviewer}: {decision.reason}"),
            "CustomerMetadataProperties": metadata}


def approval_description(text: str) -> str:
    """Text as an ApprovalDescription: one line (its pattern is Java's `.*`), at most 1,000 characters."""
    return " ".join(text.split())[:1000]


def record_package_release(sm, arn: str, status: str, reason: str) -> None:
    """The release's outcome in the package's metadata (release_status, release_reason); a rolled-back release also
    sets an Approved package `Rejected` with the reason, so nothing deploys it from SageMaker's side."""
    described = sm.describe_model_package(ModelPackageName=arn)
    metadata = {**(described.get("CustomerMetadataProperties") or {}), RELEASE_STATUS: status,
                RELEASE_REASON: metadata_value(reason)}
    # Status and description are sent as they are, as the whole metadata: UpdateModelPackage must not drop them (a
    # stand-in might).
    update = {"ModelPackageArn": arn, "CustomerMetadataProperties": metadata,
              **{k: described[k] for k in ("ModelApprovalStatus", "ApprovalDescription") if k in described}}
    if status == ROLLED_BACK and described["ModelApprovalStatus"] == APPROVED:
        update |= {"ModelApprovalStatus": REJECTED,
                   "ApprovalDescription": approval_description(f"release rolled back: {reason}")}
    sm.update_model_package(**checked("UpdateModelPackage", update))


def require_approved_package(sm, arn: str) -> dict:
    """The package's description; ApprovalRequiredError unless its status is `Approved`."""
    described = sm.describe_model_package(ModelPackageName=arn)
    status = described["ModelApprovalStatus"]
    if status != APPROVED:
        raise ApprovalRequiredError(f"model package {arn} is '{status}', not '{APPROVED}': refusing to deploy")
    return described
