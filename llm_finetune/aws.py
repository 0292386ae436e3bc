"""boto3 clients built from settings, so tests can point them at a local moto server.

boto3 already honours AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3; an explicit endpoint_url wins over both.
"""

from __future__ import annotations

import os

import boto3


def aws_client(service: str, endpoint_url: str | None = None):
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return boto3.client(service, endpoint_url=endpoint_url, region_name=region)


def s3_client(endpoint_url: str | None = None):
    return aws_client("s3", endpoint_url)
