"""SageMaker training jobs against a real moto server; the container contract runner trains a tiny T5 for real.

Each container start imports torch and transformers (tens of seconds on a busy machine), so one finished job is
shared by the tests that only read what it left behind.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from llm_finetune.backends import s3files
from llm_finetune.backends.sagemaker import (
    TRAINING,
    S3Layout,
    clients_for,
    create_job,
    ensure_bucket,
    job_prefix,
    run_sagemaker_training,
    training_image,
)
from llm_finetune.backends.sagemaker_container import decode_job_hyperparameters
from llm_finetune.errors import CostLimitError, SageMakerJobError
from llm_finetune.fingerprint import is_complete
from llm_finetune.training.seq2seq import seq2seq_job
from tests.conftest import REPO
from tests.sagemaker_helpers import jobs_spec, sdk_table_images, tiny_seq2seq_inputs, unique


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return tiny_seq2seq_inputs(tmp_path_factory.mktemp("sm-inputs"))


def job_for(inputs, work, **params):
    recipe, prepared = inputs["recipe"], inputs["prepared"]
    training = recipe.training.model_copy(update={"backend": "sagemaker", "max_steps": 6, "save_steps": 3,
                                                  "logging_steps": 2, **params})
    return seq2seq_job(inputs["base"], prepared.path, prepared.fingerprint, recipe.data.prompt_template, training, work)


def key_of(job) -> str:
    return job.output_dir.rsplit("/", 1)[1]


def jobs_of(spec, job) -> list[str]:
    """The training jobs launched for this job under this spec's S3 location."""
    prefix = job_prefix(spec, "tr", key_of(job))
    summaries = clients_for(spec).sagemaker.list_training_jobs(NameContains=prefix)["TrainingJobSummaries"]
    return [s["TrainingJobName"] for s in summaries]


@pytest.fixture(scope="module")
def first_run(inputs, moto_endpoint, tmp_path_factory):
    """One spot training job run to completion through the stand-in, with everything it reported."""
    spec = jobs_spec(moto_endpoint, training={"spot": True, "max_runtime_s": 3600})
    job = job_for(inputs, tmp_path_factory.mktemp("first"))
    lines, progress, estimates = [], [], []
    result = run_sagemaker_training(job, spec, on_output=lines.append, on_progress=progress.append,
                                    on_estimate=estimates.append)
    return {"spec": spec, "job": job, "result": result, "lines": lines, "progress": progress, "estimates": estimates}


def test_training_job_trains_with_the_packed_entry_point(first_run):
    result, lines, job = first_run["result"], first_run["lines"], first_run["job"]
    assert result.global_step == 6 and result.model_dir == f"{job.output_dir}/model"
    assert is_complete(result.model_dir) and not result.reused
    assert [p["step"] for p in result.loss_curve] == [2, 3, 4, 6]  # every 2 steps, and checkpoint-3 (RunTotals)
    assert len([line for line in lines if line.startswith("{'loss'")]) == 4
    assert first_run["progress"] and first_run["progress"][-1].step == 6
    # The container imported llm_finetune from the unpacked sourcedir.tar.gz, not from this checkout.
    origin = next(line for line in lines if line.startswith("llm_finetune from "))
    assert origin.endswith("/opt/ml/code/llm_finetune") and str(REPO) not in origin
    (estimate,) = first_run["estimates"]
    assert estimate.kind == "training" and estimate.spot and estimate.hours == 1 and estimate.usd is not None


def test_training_job_request_follows_the_recipe(first_run):
    spec, job = first_run["spec"], first_run["job"]
    clients, layout, key = clients_for(spec), S3Layout(spec), key_of(job)
    (name,) = jobs_of(spec, job)
    d = clients.sagemaker.describe_training_job(TrainingJobName=name)
    image = d["AlgorithmSpecification"]["TrainingImage"]
    assert image in sdk_table_images(spec.region, "ml.g4dn.xlarge") and "huggingface-pytorch-training" in image
    assert {c["ChannelName"] for c in d["InputDataConfig"]} == {"base_model", "dataset"}
    assert d["CheckpointConfig"] == {"S3Uri": layout.checkpoints(key), "LocalPath": "/opt/ml/checkpoints"}
    assert d["EnableManagedSpotTraining"]
    assert d["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert d["ResourceConfig"] == {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 100}
    hps = d["HyperParameters"]
    assert json.loads(hps["sagemaker_program"]) == "llmft_sagemaker_entry.py"
    assert s3files.object_exists(clients.s3, json.loads(hps["sagemaker_submit_directory"]))
    assert all(len(v) <= 2500 for v in hps.values())
    payload = decode_job_hyperparameters(hps)
    assert payload["entry_module"] == "llm_finetune.training.seq2seq"
    assert payload["job"] == job.model_dump(mode="json")
    assert payload["inputs"] == {"base_model": "base_model", "dataset": "dataset_dir"}
    assert s3files.object_exists(clients.s3, d["ModelArtifacts"]["S3ModelArtifacts"])
    # checkpoints were synced to the job's checkpoint URI
    synced = s3files.list_keys(clients.s3, layout.checkpoints(key))
    assert any(k.endswith("checkpoint-6/trainer_state.json") for k in synced)


def test_reruns_reuse_the_local_result_or_attach_to_the_completed_job(first_run, inputs, tmp_path):
    spec, job = first_run["spec"], first_run["job"]
    again = run_sagemaker_training(job, spec)
    assert again.reused and again.model_dir == first_run["result"].model_dir

    lines = []
    elsewhere = run_sagemaker_training(job_for(inputs, tmp_path), spec, on_output=lines.append)
    assert not elsewhere.reused and elsewhere.global_step == 6 and is_complete(elsewhere.model_dir)
    assert elsewhere.model_dir.startswith(str(tmp_path))
    assert any(line.startswith("attaching to SageMaker training job") for line in lines)
    assert not any(line.startswith("launched") for line in lines)
    assert len(jobs_of(spec, job)) == 1


def test_a_loopback_api_without_stand_in_is_talked_to_as_sagemaker(inputs, moto_endpoint, tmp_path):
    """moto taken for the real API (stand_in unset, as for LocalStack or a proxy): the job is created and reported as
    the API says (moto: Completed at once, no model written); no container runs here, so fetching the model fails."""
    spec = jobs_spec(moto_endpoint, stand_in=False, bucket=unique("llmft-api"))
    clients = clients_for(spec)
    clients.s3.create_bucket(Bucket=spec.bucket)  # the real API's bucket must exist: it is not created
    job, lines = job_for(inputs, tmp_path), []
    with pytest.raises(ClientError, match="404"):
        run_sagemaker_training(job, spec, on_output=lines.append)
    (name,) = jobs_of(spec, job)
    assert clients.sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "Completed"
    assert any(line.startswith("launched SageMaker training job") for line in lines)
    assert not any("stand-in" in line for line in lines) and not (Path(job.output_dir) / "sagemaker-stand-in").exists()
    assert not s3files.object_exists(clients.s3, S3Layout(spec).stand_in_status(TRAINING, name))


def test_job_resumes_from_checkpoints_in_s3(first_run, inputs, moto_endpoint, tmp_path):
    """An interrupted job left checkpoint-3 at its checkpoint URI; the relaunched job restores it and trains on."""
    done = first_run["spec"]
    spec = jobs_spec(moto_endpoint)
    job = job_for(inputs, tmp_path)
    source = S3Layout(done).checkpoints(key_of(job))
    clients = clients_for(spec)
    s3files.download_prefix(clients.s3, s3files.join_s3(source, "checkpoint-3") + "/", tmp_path / "ckpt")
    s3files.upload_folder(clients.s3, tmp_path / "ckpt", s3files.join_s3(S3Layout(spec).checkpoints(key_of(job)),
                                                                          "checkpoint-3"))
    lines = []
    result = run_sagemaker_training(job, spec, on_output=lines.append)
    assert any(line.startswith("stand-in: restored") for line in lines)
    assert result.resumed_from_checkpoint.endswith("/checkpoints/checkpoint-3")
    assert result.global_step == 6
    # Only steps 4-6 were trained (logged every 2 steps: 4 and 6); the loss curve keeps steps 2 and 3 from the checkpoint.
    assert len([line for line in lines if line.startswith("{'loss'")]) == 2
    assert [p["step"] for p in result.loss_curve] == [2, 3, 4, 6]


def test_failed_job_raises_with_its_failure_reason(inputs, moto_endpoint, tmp_path):
    # A job the trainer refuses: validated on the way in here, bypassed so that the container's check fails.
    job = job_for(inputs, tmp_path)
    broken = job.model_copy(update={"params": job.params.model_construct(**{**dict(job.params),
                                                                            "learning_rate": -1.0})})
    with pytest.raises(SageMakerJobError) as err:
        run_sagemaker_training(broken, jobs_spec(moto_endpoint))
    message = str(err.value)
    assert message.startswith(f"SageMaker training job llmft-tr-{key_of(job)}-")
    assert " Failed: AlgorithmError: exit code 1 of python -m llm_finetune.training.seq2seq" in message
    assert "learning_rate" in message and "greater than 0" in message
    assert not is_complete(f"{job.output_dir}/model")


def test_cancelled_wait_stops_the_job(inputs, sagemaker_stand_in, tmp_path):
    """StopTrainingJob is a stand-in gap of moto: the sagemaker_stand_in fixture fills it."""
    class Cancelled(BaseException):
        pass

    def cancel_once_running(line: str) -> None:
        lines.append(line)
        if line.startswith("llm_finetune from "):
            raise Cancelled

    spec = jobs_spec(sagemaker_stand_in.moto_url)
    job = job_for(inputs, tmp_path)
    lines: list[str] = []
    with pytest.raises(Cancelled):
        run_sagemaker_training(job, spec, on_output=cancel_once_running)
    clients = clients_for(spec)
    (name,) = jobs_of(spec, job)
    assert f"asked SageMaker to stop training job {name}" in lines
    assert clients.sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "Stopped"
    # The stand-in saw the stop and ended the container: its record says Stopped.
    status_uri = S3Layout(spec).stand_in_status(TRAINING, name)
    deadline = time.monotonic() + 120
    while not s3files.object_exists(clients.s3, status_uri) or b'"Stopped"' not in clients.s3.get_object(
            Bucket=spec.bucket, Key=s3files.split_s3_uri(status_uri)[1])["Body"].read():
        assert time.monotonic() < deadline, "the stand-in did not stop the container"
        time.sleep(0.5)
    assert not is_complete(f"{job.output_dir}/model")


def test_throttled_create_is_retried(moto_endpoint):
    spec = jobs_spec(moto_endpoint)
    clients = clients_for(spec)
    attempts = []

    def throttle_first(request, **kwargs):
        from botocore.awsrequest import AWSResponse

        attempts.append(request.url)
        if len(attempts) == 1:
            body = b'{"__type": "ThrottlingException", "message": "Rate exceeded"}'
            return AWSResponse(request.url, 400, {"x-amzn-errortype": "ThrottlingException"}, _Raw(body))
        return None

    clients.sagemaker.meta.events.register("before-send.sagemaker.CreateTrainingJob", throttle_first)
    request = {"TrainingJobName": "throttled-once", "RoleArn": spec.role_arn,
               "AlgorithmSpecification": {"TrainingImage": training_image(spec.training, spec.region),
                                          "TrainingInputMode": "File"},
               "OutputDataConfig": {"S3OutputPath": S3Layout(spec).training_output},
               "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
               "StoppingCondition": {"MaxRuntimeInSeconds": 60}}
    create_job(clients, TRAINING, request)
    assert len(attempts) == 2
    assert clients.sagemaker.describe_training_job(TrainingJobName="throttled-once")["TrainingJobName"] == \
        "throttled-once"


class _Raw:
    """The raw body botocore reads from a response."""

    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **kwargs):
        yield self.data


def test_cost_guard_refuses_before_anything_is_sent(inputs, moto_endpoint, tmp_path):
    spec = jobs_spec(moto_endpoint, training={"instance_count": 4, "max_cost_usd": 1.0})
    job = job_for(inputs, tmp_path)
    with pytest.raises(CostLimitError, match=r"4 x ml.g4dn.xlarge x 24 h .* over the limit, not launched"):
        run_sagemaker_training(job, spec)
    clients = clients_for(spec)
    ensure_bucket(clients, spec)
    assert jobs_of(spec, job) == []
    assert s3files.list_keys(clients.s3, S3Layout(spec).base) == []
