"""The registry on a SageMaker managed MLflow tracking server (tracking URI `arn:aws:sagemaker:...`) through the
sagemaker-mlflow plugin, and on a plain http:// server beside it. The stand-in: a real `mlflow server` whose clients
write artifacts to a (moto) S3 bucket, as a managed server's do, behind a loopback front door that checks each
request's SigV4 signature; the plugin's SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT sends the ARN's requests there instead of
https://REGION.experiments.sagemaker.aws. The service's own authorisation (IAM) is not exercised."""

from __future__ import annotations

import contextvars
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import boto3
import mlflow
import pytest
from botocore.credentials import Credentials

from llm_finetune.approval import ApprovalDecision
from llm_finetune.aws import AwsSession, s3_client, using_session
from llm_finetune.errors import TrackingUriError
from llm_finetune.registry import mlflow_registry as registry
from llm_finetune.registry.mlflow_registry import (
    alias_version,
    download_registered_model,
    ensure_experiment,
    log_and_register,
    log_report,
    model_tags,
    record_approval,
)
from tests.mlflow_helpers import mlflow_log_records, mlflow_server, signature_checking_proxy

ARN = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/team"
BUCKET = "llmft-sagemaker-mlflow"
HEADER_ERROR = "Encountered unexpected error during resolving request headers"


@pytest.fixture(scope="module")
def tracking_server(moto_endpoint, tmp_path_factory):
    s3_client(moto_endpoint).create_bucket(Bucket=BUCKET)
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server"), f"s3://{BUCKET}/artifacts") as url:
        yield url


def register(uri: str, model_dir: str):
    return log_and_register(
        tracking_uri=uri, experiment="exp", model_name="summarizer", model_dir=model_dir,
        params={"training.learning_rate": 0.003}, metrics={"finetuned_rougeL": 0.12},
        loss_curve=[{"step": 10, "loss": 9.0}, {"step": 20, "loss": 7.5}], tags={"recipe": "test"},
        samples=[{"id": "dev_0", "dialogue": "#Person1#: Hi.", "reference": "x", "base": "", "finetuned": "y"}],
        training_fingerprint="fp-1")


def test_http_tracking_server_calls_log_no_header_provider_error(tracking_server):
    # The plugin's header provider claimed every request and failed to parse an http:// URI as an ARN, once per call.
    with mlflow_log_records() as records:
        assert ensure_experiment(tracking_server, "http-exp")
        assert alias_version(tracking_server, "nothing-registered", "champion") is None
        assert model_tags(tracking_server, "nothing-registered") is None
    assert [r.getMessage() for r in records if HEADER_ERROR in r.getMessage()] == []


def test_arn_tracking_uri_registers_and_loads_the_champion_through_signed_requests(
        tracking_server, moto_endpoint, trained_tiny_model, tmp_path, monkeypatch):
    import pandas as pd

    credentials = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", moto_endpoint)  # the server's artifact bucket
    with signature_checking_proxy(tracking_server, [credentials], "us-east-1", "sagemaker-mlflow") as (front, seen):
        monkeypatch.setenv("SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT", front)
        with mlflow_log_records() as records:
            version = register(ARN, trained_tiny_model["finetuned"])
            record_approval(ARN, "summarizer", version.version,
                            ApprovalDecision(approved=True, reviewer="ana", reason="good", automatic=False), "champion")
            model_dir = download_registered_model(ARN, "models:/summarizer@champion", tmp_path / "cache")
            again = register(ARN, trained_tiny_model["finetuned"])
            assert mlflow.get_tracking_uri() == ARN
            model = mlflow.pyfunc.load_model("models:/summarizer@champion")  # MLflow's own alias resolution
            summary = model.predict(pd.DataFrame({"dialogue": ["#Person1#: Hi, Tom.\n#Person2#: Hello!"]}),
                                    params={"max_new_tokens": 4})

    assert (model_dir / "config.json").exists() and len(summary) == 1
    assert again.reused and (again.version, again.run_id) == (version.version, version.run_id)
    assert alias_version(tracking_server, "summarizer", "champion") == version.version  # the server behind the ARN
    # Every request reached the server signed (SigV4 with the boto3 credentials, for the ARN's region and the
    # sagemaker-mlflow service) and routed by the ARN header; the registry calls among them.
    assert len(seen) > 20 and [(r.method, r.path, r.problem) for r in seen if r.problem] == []
    assert {r.headers.get("x-mlflow-sm-tracking-server-arn") for r in seen} == {ARN}
    paths = {r.path.split("?")[0] for r in seen}
    assert {"/api/2.0/mlflow/model-versions/create", "/api/2.0/mlflow/registered-models/alias"} <= paths
    keys = [o["Key"] for o in s3_client(moto_endpoint).list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert any(k.endswith("/config.json") for k in keys) and any(k.endswith("/samples.json") for k in keys)
    assert [r.getMessage() for r in records if HEADER_ERROR in r.getMessage()] == []


def test_arn_requests_and_artifacts_sign_with_the_runs_session_not_the_environments_keys(
        tracking_server, moto_endpoint, monkeypatch, tmp_path):
    environment = Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    team = Credentials("AKIATEAMBLOCK0000001", "the-team-blocks-secret")  # as an AwsCredentials block's keys
    assert team.access_key != environment.access_key
    run = AwsSession(boto3.Session(aws_access_key_id=team.access_key, aws_secret_access_key=team.secret_key,
                                   region_name="eu-west-1"), source="aws.credentials_block 'team-aws'")
    report = tmp_path / "report.md"
    report.write_text("# a report\n")
    identities = [environment, team]
    with signature_checking_proxy(tracking_server, identities, "us-east-1", "sagemaker-mlflow") as (front, seen), \
            signature_checking_proxy(moto_endpoint, identities, "us-east-1", "s3") as (s3_front, s3_seen):
        monkeypatch.setenv("SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT", front)
        monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3_front)  # the artifact bucket, behind its own front door
        with using_session(run):
            log_report(ARN, "signed-by-the-run", "report", {"score": 1.0}, [report], tags={})
            # A flow's task: another thread, started with a copy of the run's context (Prefect's task runner).
            with ThreadPoolExecutor(1) as pool:
                pool.submit(contextvars.copy_context().run, model_tags, ARN, "nothing-registered").result()
        in_run, s3_in_run = len(seen), len(s3_seen)
        log_report(ARN, "signed-by-the-default-chain", "report", {"score": 1.0}, [report], tags={})

    assert in_run >= 3 and len(seen) > in_run and s3_in_run >= 1 and len(s3_seen) > s3_in_run
    assert [(r.method, r.path, r.problem) for r in seen + s3_seen if r.problem] == []  # every signature holds
    # The run's keys, while the environment holds others; no session: boto3's default chain, as before.
    assert {r.key for r in seen[:in_run]} == {r.key for r in s3_seen[:s3_in_run]} == {team.access_key}
    assert {r.key for r in seen[in_run:]} == {r.key for r in s3_seen[s3_in_run:]} == {environment.access_key}
    assert {r.method for r in s3_seen} == {"PUT"} and all(r.path.endswith("/report.md") for r in s3_seen)


def test_arn_without_credentials_or_plugin_is_one_line_naming_the_setting(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_READY_ARNS", set())  # checked once per process: check again
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to find
    with pytest.raises(TrackingUriError) as err:
        ensure_experiment(ARN, "exp")
    assert str(err.value) == (
        f"MLflow tracking URI from the recipe's tracking_uri or $MLFLOW_TRACKING_URI: {ARN}: no AWS credentials to "
        f"sign its requests with: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or run with an instance or "
        f"task role) of an identity the server's IAM policy allows, with access to its S3 artifact store")
    # A run's identity stands in for the environment's; one that finds no credentials is named.
    with using_session(AwsSession(boto3.Session(aws_access_key_id="AKIATEAM", aws_secret_access_key="s"),
                                  source="aws.credentials_block 'team-aws'")):
        registry.check_arn_tracking(ARN)
    empty = AwsSession(boto3.Session(), source="aws.credentials_block 'empty'")
    with using_session(empty), pytest.raises(TrackingUriError) as err:
        registry.check_arn_tracking(ARN)
    assert str(err.value) == (
        f"MLflow tracking URI from the recipe's tracking_uri or $MLFLOW_TRACKING_URI: {ARN}: aws.credentials_block "
        f"'empty' gives no AWS credentials to sign its requests with: give the block keys, a profile or a role the "
        f"server's IAM policy allows, with access to its S3 artifact store")

    monkeypatch.setitem(sys.modules, "sagemaker_mlflow", None)  # as where the plugin is not installed
    with pytest.raises(TrackingUriError) as err:
        alias_version(ARN, "summarizer", "champion")
    assert str(err.value) == (
        f"MLflow tracking URI from the recipe's tracking_uri or $MLFLOW_TRACKING_URI: {ARN}: a SageMaker managed MLflow ARN "
        f"needs the sagemaker-mlflow plugin (pip install sagemaker-mlflow; the sagemaker SDK installs it)")
    with pytest.raises(TrackingUriError, match=r"'arn:aws:sagemaker:us-east-1:team' is not a SageMaker managed"):
        model_tags("arn:aws:sagemaker:us-east-1:team", "summarizer")
