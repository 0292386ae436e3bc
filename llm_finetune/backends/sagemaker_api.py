"""The SageMaker API as the backend and its local stand-in share it: job kinds and their calls, clients, and where
each thing goes in S3."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_finetune.aws import RETRYING, current_session, s3_client, sagemaker_client
from llm_finetune.backends import s3files
from llm_finetune.errors import RecipeError
from llm_finetune.recipes import SageMakerSpec


@dataclass(frozen=True)
class JobApi:
    """The SageMaker API calls of one job kind."""

    kind: str
    create: str
    describe: str
    list: str
    stop: str
    name_param: str
    status: str
    summaries: str
    arn: str


TRAINING = JobApi("training", "create_training_job", "describe_training_job", "list_training_jobs",
                  "stop_training_job", "TrainingJobName", "TrainingJobStatus", "TrainingJobSummaries", "TrainingJobArn")
PROCESSING = JobApi("processing", "create_processing_job", "describe_processing_job", "list_processing_jobs",
                    "stop_processing_job", "ProcessingJobName", "ProcessingJobStatus", "ProcessingJobSummaries",
                    "ProcessingJobArn")


@dataclass
class AwsClients:
    sagemaker: Any
    s3: Any


def clients_for(spec: SageMakerSpec) -> AwsClients:
    """Clients for the recipe's region and endpoint (from the named AWS session when one is in use). A stand-in
    accepts any signature, so when no AWS credentials are configured it gets placeholder ones."""
    import boto3

    if spec.stand_in and current_session() is None and boto3.Session().get_credentials() is None:
        session = boto3.Session(aws_access_key_id="stand-in", aws_secret_access_key="stand-in",
                                region_name=spec.region)
        return AwsClients(session.client("sagemaker", endpoint_url=spec.endpoint_url, config=RETRYING),
                          session.client("s3", endpoint_url=spec.endpoint_url))
    return AwsClients(sagemaker_client(spec.endpoint_url, spec.region), s3_client(spec.endpoint_url, spec.region))


class S3Layout:
    """Where each thing goes under s3://<bucket>/<prefix>/."""

    def __init__(self, spec: SageMakerSpec):
        if spec.bucket is None:
            raise RecipeError("sagemaker.bucket is unset: set it, or name an S3Bucket block in aws.s3_bucket_block "
                              "(a flow fills the bucket in from the block)")
        self.base = f"s3://{spec.bucket}/{spec.prefix.strip('/')}" if spec.prefix.strip("/") else f"s3://{spec.bucket}"
        self.checkpoint_base = spec.checkpoint_s3_uri or s3files.join_s3(self.base, "checkpoints")

    def code(self, sha: str) -> str:
        return s3files.join_s3(self.base, "code", sha[:16], "sourcedir.tar.gz")

    def input(self, name: str, sha: str) -> str:
        return s3files.join_s3(self.base, "inputs", name, sha[:16]) + "/"

    @property
    def training_output(self) -> str:
        return s3files.join_s3(self.base, "training-jobs")

    def checkpoints(self, key: str) -> str:
        return s3files.join_s3(self.checkpoint_base, key) + "/"

    def processing_output(self, key: str) -> str:
        return s3files.join_s3(self.base, "processing", key) + "/"

    def stand_in_status(self, api: JobApi, name: str) -> str:
        return s3files.join_s3(self.base, "stand-in", api.kind, f"{name}.json")

    def stand_in_substitute(self, name: str) -> str:
        """What a stand-in runs in place of a JumpStart training job (llm_finetune.backends.sagemaker_contract)."""
        return s3files.join_s3(self.base, "stand-in", "training", f"{name}.substitute.json")
