"""boto3 clients built from settings, so tests can point them at a local moto server.

boto3 already honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_SAGEMAKER; an explicit endpoint_url
wins over them. Inside `using_session(...)` clients come from that session instead of boto3's default credential chain
(the Prefect layer builds it from the blocks a recipe's `aws` section names). SageMaker clients retry throttling and
transient errors (botocore's "standard" retry mode: ThrottlingException, HTTP 500/502/503/504, connection errors)
with exponential backoff, so a busy account slows a flow down instead of failing it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.credentials import Credentials
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


@dataclass(frozen=True)
class AwsSession:
    """A named AWS identity: the boto3 session its clients come from, the endpoint they default to, and where it was
    named (for messages). Its repr shows no key: boto3.Session's repr holds only the region."""

    session: boto3.Session
    source: str  # e.g. "aws.credentials_block 'team-aws'"
    endpoint_url: str | None = None


_CURRENT: ContextVar[AwsSession | None] = ContextVar("llmft_aws_session", default=None)
# A boto3 Session is not thread-safe, and tasks in worker threads build clients from the one session.
_SESSION_LOCK = threading.Lock()


@contextmanager
def using_session(aws: AwsSession | None) -> Iterator[None]:
    """AWS clients built inside (and in threads started with a copy of this context) come from `aws`; None keeps
    boto3's default credential chain."""
    token = _CURRENT.set(aws)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_session() -> AwsSession | None:
    return _CURRENT.get()


def aws_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def client(service: str, endpoint_url: str | None = None, region: str | None = None, config: Config | None = None):
    """A boto3 client: the recipe's endpoint and region win, then the named session's, then the environment's."""
    aws = _CURRENT.get()
    if aws is None:
        return boto3.client(service, endpoint_url=endpoint_url, region_name=region or aws_region(), config=config)
    with _SESSION_LOCK:
        return aws.session.client(service, endpoint_url=endpoint_url or aws.endpoint_url,
                                  region_name=region or aws.session.region_name or aws_region(), config=config)


def current_credentials() -> Credentials | None:
    """The credentials AWS clients built now sign with: the named identity's, else the default chain's; None when
    there are none."""
    aws = _CURRENT.get()
    if aws is None:
        return boto3.Session().get_credentials()
    with _SESSION_LOCK:
        return aws.session.get_credentials()


def boto_session(region: str | None = None) -> boto3.Session:
    """A boto3 Session for an SDK that takes one (the sagemaker SDK, the sagemaker-mlflow signer): the named
    identity's credentials, else the default chain. A new one per call: a boto3 Session is not thread-safe."""
    aws = _CURRENT.get()
    if aws is None:
        return boto3.Session(region_name=region or aws_region())
    credentials = current_credentials()
    if credentials is None:
        raise NoCredentialsError()
    frozen = credentials.get_frozen_credentials()
    return boto3.Session(aws_access_key_id=frozen.access_key, aws_secret_access_key=frozen.secret_key,
                         aws_session_token=frozen.token, region_name=region or aws.session.region_name or aws_region())


def s3_client(endpoint_url: str | None = None, region: str | None = None):
    return client("s3", endpoint_url, region)


def sagemaker_client(endpoint_url: str | None = None, region: str | None = None):
    return client("sagemaker", endpoint_url, region, config=RETRYING)


def sagemaker_runtime_client(endpoint_url: str | None = None, region: str | None = None, timeout_s: float = 120.0):
    """InvokeEndpoint's client; read_timeout bounds one generation (SageMaker itself stops at 60 s by default)."""
    return client("sagemaker-runtime", endpoint_url, region, config=Config(read_timeout=timeout_s))
