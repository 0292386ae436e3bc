"""boto3 clients built from settings, so tests can point them at a local moto server.

boto3 already honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_SAGEMAKER; an explicit endpoint_url
wins over them. SageMaker clients retry throttling and transient errors (botocore's "standard" retry mode:
ThrottlingException, HTTP 500/502/503/504, connection errors) with exponential backoff, so a busy account slows a flow
down instead of failing it.
"""

from __future__ import annotations

import os

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, NoCredentialsError, ParamValidationError, PartialCredentialsError

RETRYING = Config(retries={"mode": "standard", "max_attempts": 5})
# What to do when boto3 finds no credentials (botocore's NoCredentialsError): real AWS, or the local stand-in.
NO_CREDENTIALS = (
    "no AWS credentials found: for AWS set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) of an identity "
    "that may use sagemaker.bucket and pass sagemaker.role_arn; offline, start the stand-in (bash "
    "scripts/moto_server.sh), run with sagemaker.endpoint_url=http://127.0.0.1:5000 sagemaker.stand_in=true and any "
    "key pair (AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing)")


def is_permanent(error: BaseException | None) -> bool:
    """An AWS error that no retry fixes: no credentials, a request botocore refuses, or a 4xx answer other than
    throttling (botocore's standard mode has already retried the transient ones)."""
    if isinstance(error, (NoCredentialsError, PartialCredentialsError, ParamValidationError)):
        return True
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return 400 <= status < 500 and status != 429 and "Throttl" not in error.response.get("Error", {}).get("Code", "")
    return False


def aws_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def s3_client(endpoint_url: str | None = None, region: str | None = None):
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region or aws_region())


def sagemaker_client(endpoint_url: str | None = None, region: str | None = None):
    return boto3.client("sagemaker", endpoint_url=endpoint_url, region_name=region or aws_region(), config=RETRYING)


def sagemaker_runtime_client(endpoint_url: str | None = None, region: str | None = None, timeout_s: float = 120.0):
    """InvokeEndpoint's client; read_timeout bounds one generation (SageMaker itself stops at 60 s by default)."""
    return boto3.client("sagemaker-runtime", endpoint_url=endpoint_url, region_name=region or aws_region(),
                        config=Config(read_timeout=timeout_s))
