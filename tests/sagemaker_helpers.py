"""Helpers for SageMaker tests: a bucket, a model package spec and an endpoint spec on the moto stand-in."""

from __future__ import annotations

import uuid

from llm_finetune.aws import s3_client
from llm_finetune.recipes import SageMakerEndpointSpec, SageMakerModelPackageSpec

# The HF PyTorch inference DLC a real recipe would name (moto does not pull images; the stand-in serves the model).
HF_INFERENCE_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:"
                      "2.6.0-transformers4.51.3-cpu-py312-ubuntu22.04")
ROLE_ARN = "arn:aws:iam::123456789012:role/llmft-sagemaker-execution"


def unique(prefix: str) -> str:
    """A name no other test on the session's moto server uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def package_spec(moto_url: str, group: str | None = None) -> SageMakerModelPackageSpec:
    bucket = unique("llmft-models")
    s3_client(moto_url).create_bucket(Bucket=bucket)
    return SageMakerModelPackageSpec(model_package_group=group or unique("summarizer"), s3_prefix=f"s3://{bucket}/packages",
                                     image_uri=HF_INFERENCE_IMAGE, inference_instance_types=["ml.g4dn.xlarge"])


def endpoint_spec(name: str | None = None) -> SageMakerEndpointSpec:
    # ml.g4dn.*: moto 5.2.5 rejects ml.g5.* endpoint configs (old instance enum); the poll is short for the stand-in
    return SageMakerEndpointSpec(endpoint_name=name or unique("summarizer"), role_arn=ROLE_ARN,
                                 instance_type="ml.g4dn.xlarge", wait_timeout_s=300, poll_interval_s=0.2)
