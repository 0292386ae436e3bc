"""SageMaker backend: a training job (any trainer's TrainJob) or a processing job (a data-preparation step) through the
SageMaker API, running the same entry points as the local backend (`python -m <entry> --job job.json`).

Training: the job's input folders (base model, data) go to S3 once per content hash and become input channels; the
project's code goes as `sourcedir.tar.gz` (llm_finetune, the entry script, a pinned requirements.txt); the job JSON
goes as hyperparameters; CheckpointConfig points at <checkpoint URI>/<training fingerprint>/, so a relaunched
(spot-interrupted, failed) job resumes from its checkpoints. The job is polled with backoff; on Completed its
model.tar.gz is unpacked into the job's local output folder and the flow goes on as after a local run; on Failed or
Stopped the error carries the job's FailureReason. botocore retries throttling and transient errors
(llm_finetune.aws). A re-run attaches to a job of the same fingerprint that is running or done instead of launching
another. A flow cancelled while waiting stops the job.

JumpStart (recipe `sagemaker.jumpstart`): the job runs JumpStart's image, training script and base weights instead of
the project's trainer; the job's records go as JumpStart's instruction data (train.jsonl + template.json, see
llm_finetune.backends.jumpstart) with the recipe's settings as JumpStart hyperparameters; instances, limits, spot, checkpoints,
polling, cost guard and FailureReason are handled as for any job. Its model.tar.gz holds only the model, which becomes
<output>/model with a result from the job's description.

With `sagemaker.stand_in` (the API at endpoint_url is a local stand-in such as moto, which marks jobs complete
without running them), llm_finetune.backends.sagemaker_contract runs each job's container locally under the SageMaker
container contract (for a JumpStart job: this project's trainer in place of JumpStart's script, which is out of its
reach). Any other endpoint, loopback or not (LocalStack, a VPC endpoint), is talked to as the SageMaker API.

Why plain boto3 and not the sagemaker SDK's ModelTrainer: CreateTrainingJob / DescribeTrainingJob are versioned service
APIs that botocore keeps working, while the SDK's v2 -> v3 change removed the estimators outright and ModelTrainer
reaches a stand-in only with extra settings (AWS_ENDPOINT_URL, SAGEMAKER_VALIDATE_ROLE, a hook for moto's empty
VpcConfig); its request shapes follow the SDK release, ours follow the API reference. The SDK is used where it works
offline and adds something: its image URI tables (llm_finetune.backends.images).
"""

from __future__ import annotations

import json
import queue
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel

from llm_finetune.backends import s3files
from llm_finetune.backends.cost import CostEstimate, check_cost, estimate_cost
from llm_finetune.backends.images import job_image
from llm_finetune.backends.jumpstart import training_data, training_job_request
from llm_finetune.backends.sagemaker_api import PROCESSING, TRAINING, AwsClients, JobApi, S3Layout, clients_for
from llm_finetune.backends.sagemaker_container import container_job, encode_job_hyperparameters, get_field
from llm_finetune.backends.sagemaker_contract import StandIn, write_substitute
from llm_finetune.backends.service_model import NAME_MAX, checked, short_name
from llm_finetune.backends.sourcedir import ENTRY_SCRIPT, pack_sourcedir
from llm_finetune.errors import RecipeError, SageMakerJobError
from llm_finetune.fingerprint import COMPLETE_MARKER, build_once, directory_sha256, fingerprint, locked, mark_complete
from llm_finetune.recipes import JumpStartSpec, SageMakerCompute, SageMakerSpec
from llm_finetune.training.job import JOB_FILE, MODEL_DIR, RESULT_FILE, TrainingResult, TrainJob, finished_result
from llm_finetune.training.progress import TrainingProgress

CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
PROCESSING_ROOT = "/opt/ml/processing"
# A processing image has no training toolkit: unpack the source dir, then run the entry script.
PROCESSING_COMMAND = (f"mkdir -p {PROCESSING_ROOT}/code && tar -xzf {PROCESSING_ROOT}/input/code/sourcedir.tar.gz "
                      f"-C {PROCESSING_ROOT}/code && cd {PROCESSING_ROOT}/code && "
                      f"exec python3 {ENTRY_SCRIPT} processing --root {PROCESSING_ROOT}")
MAX_HYPERPARAMETERS = 100
TIMESTAMP_FORMAT = "%Y%m%d%H%M%S"
TIMESTAMP = "YYYYmmddHHMMSS"  # its length
TERMINAL = ("Completed", "Failed", "Stopped")


def training_image(compute: SageMakerCompute, region: str, field: str = "sagemaker.training.image_uri") -> str:
    """A training or processing job's image: the recipe's image_uri, else the one the SDK's tables give for the region
    and instance type (a CPU image on a CPU instance)."""
    return compute.image_uri or job_image(region, compute.instance_type, field)


# ---------------------------------------------------------------------------------------------------------------
# Staging: bucket, inputs, code


def ensure_bucket(clients: AwsClients, spec: SageMakerSpec) -> None:
    """A stand-in gets the bucket created; a real account must have it (the role needs access to it)."""
    from botocore.exceptions import ClientError

    try:
        clients.s3.head_bucket(Bucket=spec.bucket)
        return
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
    if not spec.stand_in:
        raise RecipeError(f"sagemaker.bucket: S3 bucket {spec.bucket!r} does not exist in {spec.region}; create it "
                          "(the execution role needs read/write access) or name another")
    extra = {} if spec.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": spec.region}}
    clients.s3.create_bucket(Bucket=spec.bucket, **extra)


def stage_folder(clients: AwsClients, layout: S3Layout, name: str, folder: str | Path) -> str:
    """Upload a folder once per content: s3://.../inputs/<name>/<sha>/ (complete once <sha>.complete exists)."""
    uri = layout.input(name, directory_sha256(folder))
    marker = uri.rstrip("/") + ".complete"
    if not s3files.object_exists(clients.s3, marker):
        s3files.upload_folder(clients.s3, folder, uri)
        bucket, key = s3files.split_s3_uri(marker)
        clients.s3.put_object(Bucket=bucket, Key=key, Body=b"ok\n")
    return uri


def stage_code(clients: AwsClients, layout: S3Layout) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path, sha = pack_sourcedir(tmp)
        uri = layout.code(sha)
        if not s3files.object_exists(clients.s3, uri):
            s3files.upload_file(clients.s3, path, uri)
    return uri


def stage_inputs(clients: AwsClients, layout: S3Layout, job: BaseModel) -> dict[str, str]:
    """Input name -> S3 prefix for each of the job's input folders that exists here (a Hub id stays a Hub id)."""
    dump = job.model_dump(mode="json")
    folders = {name: get_field(dump, field) for name, field in type(job).input_paths.items()}
    return {name: stage_folder(clients, layout, name, folder)
            for name, folder in folders.items() if Path(folder).is_dir()}


def payload_for(job: BaseModel, staged: dict[str, str]) -> dict:
    inputs = {name: field for name, field in type(job).input_paths.items() if name in staged}
    return container_job(type(job).entry_module, job.model_dump(mode="json"), inputs, type(job).output_path)


# ---------------------------------------------------------------------------------------------------------------
# Requests


def training_request(name: str, key: str, job: TrainJob, spec: SageMakerSpec, layout: S3Layout,
                     channels: dict[str, str], code_uri: str) -> dict:
    """CreateTrainingJob arguments. Hyperparameter values are JSON strings, as the SageMaker SDKs send them."""
    t = spec.training
    image = training_image(t, spec.region)
    hyperparameters = {
        "sagemaker_program": json.dumps(ENTRY_SCRIPT),
        "sagemaker_submit_directory": json.dumps(code_uri),
        "sagemaker_region": json.dumps(spec.region),
        **encode_job_hyperparameters(payload_for(job, channels)),
    }
    if len(hyperparameters) > MAX_HYPERPARAMETERS:
        raise SageMakerJobError(f"the job JSON needs {len(hyperparameters)} hyperparameters, more than SageMaker's "
                                f"{MAX_HYPERPARAMETERS}")
    return {
        "TrainingJobName": name,
        "RoleArn": spec.role_arn,
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "HyperParameters": hyperparameters,
        "InputDataConfig": [
            {"ChannelName": channel, "InputMode": "File", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}}}
            for channel, uri in channels.items()],
        "OutputDataConfig": {"S3OutputPath": layout.training_output},
        **training_job_settings(key, spec, layout),
    }


def training_job_settings(key: str, spec: SageMakerSpec, layout: S3Layout) -> dict:
    """What every training job of ours sets, whatever runs in it: instances, limits, managed spot, checkpoints
    (<checkpoint URI>/<key>/), and the fingerprint tag a re-run finds it by."""
    t = spec.training
    stopping = {"MaxRuntimeInSeconds": t.max_runtime_s}
    if t.spot:
        stopping["MaxWaitTimeInSeconds"] = t.max_wait_s or 2 * t.max_runtime_s
    return {
        "ResourceConfig": {"InstanceType": t.instance_type, "InstanceCount": t.instance_count,
                           "VolumeSizeInGB": t.volume_size_gb},
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": t.spot,
        "CheckpointConfig": {"S3Uri": layout.checkpoints(key), "LocalPath": CHECKPOINT_LOCAL_PATH},
        "Tags": [{"Key": "llmft:fingerprint", "Value": key}],
    }


def jumpstart_training_request(name: str, key: str, job: TrainJob, spec: SageMakerSpec, layout: S3Layout,
                               clients: AwsClients) -> dict:
    """CreateTrainingJob arguments of a JumpStart fine-tune (spec.jumpstart): the job's data written in JumpStart's
    format and staged as the `training` (and `validation`) channel, JumpStart's image, script and base weights
    (llm_finetune.backends.jumpstart.training_job_request), and our instances, limits, spot and checkpoint settings."""
    with tempfile.TemporaryDirectory() as tmp:
        folders, hyperparameters = training_data(spec.jumpstart, job, Path(tmp))
        uris = {channel: stage_folder(clients, layout, f"jumpstart-{channel}", folder)
                for channel, folder in folders.items()}
    request = training_job_request(
        spec.jumpstart, job_name=name, role_arn=spec.role_arn, train_s3_uri=uris["training"],
        validation_s3_uri=uris.get("validation"), output_s3_uri=layout.training_output,
        instance_type=spec.training.instance_type, hyperparameters=hyperparameters,
        max_runtime_s=spec.training.max_runtime_s)
    settings = training_job_settings(key, spec, layout)
    return {**request, **settings, "Tags": request["Tags"] + settings["Tags"]}


def processing_request(name: str, key: str, spec: SageMakerSpec, layout: S3Layout, inputs: dict[str, str],
                       code_uri: str) -> dict:
    """CreateProcessingJob arguments: code, job and data in under /opt/ml/processing/input/<name>, one output."""
    p = spec.processing

    def s3_input(input_name: str, uri: str) -> dict:
        return {"InputName": input_name, "S3Input": {
            "S3Uri": uri, "LocalPath": f"{PROCESSING_ROOT}/input/{input_name}", "S3DataType": "S3Prefix",
            "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}

    return {
        "ProcessingJobName": name,
        "RoleArn": spec.role_arn,
        "AppSpecification": {"ImageUri": training_image(p, spec.region, "sagemaker.processing.image_uri"),
                             "ContainerEntrypoint": ["/bin/sh", "-c", PROCESSING_COMMAND]},
        "ProcessingInputs": [s3_input("code", code_uri), *(s3_input(n, uri) for n, uri in inputs.items())],
        "ProcessingOutputConfig": {"Outputs": [{"OutputName": "output", "S3Output": {
            "S3Uri": layout.processing_output(key), "LocalPath": f"{PROCESSING_ROOT}/output",
            "S3UploadMode": "EndOfJob"}}]},
        "ProcessingResources": {"ClusterConfig": {"InstanceCount": p.instance_count, "InstanceType": p.instance_type,
                                                  "VolumeSizeInGB": p.volume_size_gb}},
        "StoppingCondition": {"MaxRuntimeInSeconds": p.max_runtime_s},
        "Tags": [{"Key": "llmft:fingerprint", "Value": key}],
    }


# ---------------------------------------------------------------------------------------------------------------
# Launch, attach, wait, stop


def job_prefix(spec: SageMakerSpec, kind: str, key: str) -> str:
    """llmft-<kind>-<fingerprint>-<storage>: jobs of one step and one S3 location; a re-run attaches to those only."""
    return f"llmft-{kind}-{key}-{fingerprint(spec.bucket, spec.prefix)[:6]}"


def job_stem(prefix: str) -> str:
    """The prefix as it starts job names: cut to fit, with a hash of the whole prefix, when it is too long for a
    name with its timestamp (so two long prefixes never share a stem)."""
    room = NAME_MAX - len(TIMESTAMP) - 1
    return prefix if len(prefix) <= room else short_name(prefix, room)


def job_name(prefix: str) -> str:
    """<stem>-<UTC time to the second>: unique (names are never reused) and at most 63 characters."""
    return f"{job_stem(prefix)}-{datetime.now(timezone.utc).strftime(TIMESTAMP_FORMAT)}"


def reusable_job(clients: AwsClients, api: JobApi, prefix: str, describe: Callable[[str], dict]) -> str | None:
    """The newest job named <stem>-* that is running or completed (a failed or stopped one is launched anew)."""
    stem = job_stem(prefix)
    listing = getattr(clients.sagemaker, api.list)(NameContains=stem, SortBy="CreationTime",
                                                   SortOrder="Descending", MaxResults=20)
    for summary in listing[api.summaries]:
        name = summary[api.name_param]
        if not name.startswith(f"{stem}-"):
            continue
        status = describe(name)[api.status]
        return name if status in ("InProgress", "Stopping", "Completed") else None
    return None


def create_job(clients: AwsClients, api: JobApi, request: dict) -> None:
    """Create the job (SageMakerRequestError, nothing sent, if the service would reject the request). ResourceInUse
    means a job of that name exists: it is this request's (a retried create whose first attempt went through) only if
    it carries the same tags (the step's fingerprint) and is not over; otherwise SageMakerJobError."""
    from botocore.exceptions import ClientError

    try:
        getattr(clients.sagemaker, api.create)(**checked(api.create, request))
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") != "ResourceInUse":
            raise
        name = request[api.name_param]
        existing = getattr(clients.sagemaker, api.describe)(**{api.name_param: name})
        tags = {t["Key"]: t["Value"] for t in clients.sagemaker.list_tags(ResourceArn=existing[api.arn])["Tags"]}
        wanted = {t["Key"]: t["Value"] for t in request.get("Tags", [])}
        if not wanted.items() <= tags.items() or existing[api.status] in ("Failed", "Stopped"):
            raise SageMakerJobError(f"SageMaker {api.kind} job {name} already exists and is not this request's "
                                    f"({existing[api.status]}, tags {tags}); run again for a new name") from None


def stop_job(clients: AwsClients, api: JobApi, name: str, on_output: Callable[[str], None]) -> None:
    """Ask the service to stop a job we stop waiting for; say so when it cannot (moto lacks StopTrainingJob)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        getattr(clients.sagemaker, api.stop)(**{api.name_param: name})
        on_output(f"asked SageMaker to stop {api.kind} job {name}")
    except (ClientError, BotoCoreError) as e:
        on_output(f"could not stop {api.kind} job {name} ({e}); stop it in the SageMaker console")


def wait_for_job(describe: Callable[[], dict], api: JobApi, *, poll_initial_s: float, poll_max_s: float,
                 events: queue.Queue | None = None, on_event: Callable[[Any], None] | None = None,
                 on_output: Callable[[str], None] = print) -> dict:
    """Poll until the job is Completed, Failed or Stopped, waiting poll_initial_s x 1.5^n (at most poll_max_s) between
    polls; relay status changes, and any events (a stand-in's output) as they come."""
    delay, last = poll_initial_s, None
    while True:
        description = describe()
        state = (description[api.status], description.get("SecondaryStatus"))
        if state != last:
            on_output(f"{api.kind} job {description.get(api.name_param)}: {' / '.join(s for s in state if s)}")
            last = state
        if state[0] in TERMINAL:
            _drain(events, on_event, 0)
            return description
        _drain(events, on_event, delay)
        delay = min(delay * 1.5, poll_max_s)


def _drain(events: queue.Queue | None, on_event, wait_s: float) -> None:
    """Relay events for wait_s seconds (or, with wait_s 0, those already queued); just sleep without events."""
    if events is None:
        time.sleep(wait_s)
        return
    deadline = time.monotonic() + wait_s
    while True:
        try:
            event = events.get(timeout=max(deadline - time.monotonic(), 0)) if wait_s else events.get_nowait()
        except queue.Empty:
            return
        if on_event:
            on_event(event)


def raise_unless_completed(description: dict, api: JobApi, name: str) -> None:
    status = description[api.status]
    if status != "Completed":
        reason = description.get("FailureReason") or "no FailureReason given"
        raise SageMakerJobError(f"SageMaker {api.kind} job {name} {status}: {reason}")


@dataclass
class Callbacks:
    on_output: Callable[[str], None] = print
    on_progress: Callable[[TrainingProgress], None] | None = None
    on_estimate: Callable[[CostEstimate], None] | None = None

    def event(self, event: tuple) -> None:
        kind, value = event
        if kind == "output":
            self.on_output(value)
        elif kind == "progress" and self.on_progress:
            self.on_progress(value)


def _run_job(clients: AwsClients, spec: SageMakerSpec, api: JobApi, prefix: str, work_root: Path,
             launch: Callable[[str], dict], compute: SageMakerCompute, callbacks: Callbacks) -> dict:
    """Attach to a running/completed job of this prefix or launch one (cost guard first); wait for it; return its
    description. `launch(name)` stages what the job needs and returns its Create*Job arguments."""
    stand_in = None
    if spec.stand_in:
        stand_in = StandIn(clients, S3Layout(spec), work_root)
        describe = lambda name: stand_in.describe(api, name)  # noqa: E731
    else:
        describe = lambda name: getattr(clients.sagemaker, api.describe)(**{api.name_param: name})  # noqa: E731

    name = reusable_job(clients, api, prefix, describe)
    if name is not None:
        callbacks.on_output(f"attaching to SageMaker {api.kind} job {name}")
    else:
        estimate = estimate_cost(api.kind, compute, spec.region)
        callbacks.on_output(estimate.summary())
        if callbacks.on_estimate:
            callbacks.on_estimate(estimate)
        check_cost(estimate)
        ensure_bucket(clients, spec)
        name = job_name(prefix)
        create_job(clients, api, launch(name))
        callbacks.on_output(f"launched SageMaker {api.kind} job {name}")
    if stand_in is not None:
        stand_in.start(api, name)
    try:
        description = wait_for_job(lambda: describe(name), api, poll_initial_s=spec.poll_initial_s,
                                   poll_max_s=spec.poll_max_s, events=stand_in.events if stand_in else None,
                                   on_event=callbacks.event, on_output=callbacks.on_output)
    except BaseException:  # cancelled or interrupted: the job must not run on, billed, without us
        stop_job(clients, api, name, callbacks.on_output)
        raise
    raise_unless_completed(description, api, name)
    return description


# ---------------------------------------------------------------------------------------------------------------
# Training


def run_sagemaker_training(job: TrainJob, spec: SageMakerSpec, *, clients: AwsClients | None = None,
                           on_output: Callable[[str], None] = print,
                           on_progress: Callable[[TrainingProgress], None] | None = None,
                           on_estimate: Callable[[CostEstimate], None] | None = None) -> TrainingResult:
    """Train as a SageMaker training job (or reuse the finished local result); the model lands in job.output_dir as
    after a local run. Raises CostLimitError before launching above max_cost_usd, SageMakerJobError if the job ends
    Failed or Stopped. With spec.jumpstart the job is a JumpStart fine-tune of the job's data, in
    <output_dir>-jumpstart-<spec hash> (its fingerprint)."""
    if spec.jumpstart is not None:
        job = jumpstart_job(job, spec.jumpstart)
        result = _run_sagemaker_training(job, spec, clients, Callbacks(on_output, on_progress, on_estimate))
        return result.model_copy(update={"fingerprint": Path(job.output_dir).name})
    return _run_sagemaker_training(job, spec, clients, Callbacks(on_output, on_progress, on_estimate))


def jumpstart_job(job: TrainJob, jumpstart: JumpStartSpec) -> TrainJob:
    """The job as a JumpStart fine-tune: another trainer, so its own folder (neither run's result is taken for the
    other's), keyed by epochs too: JumpStart trains for epochs even where max_steps is set (the job's key then
    leaves them out)."""
    key = fingerprint(jumpstart, getattr(getattr(job, "params", None), "epochs", None))
    return job.model_copy(update={"output_dir": f"{job.output_dir}-jumpstart-{key[:8]}"})


def _run_sagemaker_training(job: TrainJob, spec: SageMakerSpec, clients: AwsClients | None,
                            callbacks: Callbacks) -> TrainingResult:
    out = Path(job.output_dir)
    key = out.name  # the training fingerprint
    with locked(out):
        if (finished := finished_result(out, job.result_type)) is not None:
            return finished
        clients = clients or clients_for(spec)
        layout = S3Layout(spec)

        def launch(name: str) -> dict:
            out.mkdir(parents=True, exist_ok=True)
            (out / JOB_FILE).write_text(job.model_dump_json(indent=2))
            if spec.jumpstart is None:
                return training_request(name, key, job, spec, layout, stage_inputs(clients, layout, job),
                                        stage_code(clients, layout))
            request = jumpstart_training_request(name, key, job, spec, layout, clients)
            if spec.stand_in:  # JumpStart's script and weights are out of its reach: ours run
                own = training_request(name, key, job, spec, layout, stage_inputs(clients, layout, job),
                                       stage_code(clients, layout))
                write_substitute(clients, layout, name, own, replaces=("model",))
            return request

        description = _run_job(clients, spec, TRAINING, job_prefix(spec, "tr", key), out / "sagemaker-stand-in",
                               launch, spec.training, callbacks)
        return fetch_training_result(clients, description["ModelArtifacts"]["S3ModelArtifacts"], job, description)


def fetch_training_result(clients: AwsClients, model_uri: str, job: TrainJob,
                          description: dict | None = None) -> TrainingResult:
    """Unpack model.tar.gz into the job's output folder; paths in its result.json become local ones. An archive
    without result.json (JumpStart's training script writes only the model) becomes <output>/model, with a result
    from what DescribeTrainingJob says."""
    out = Path(job.output_dir)
    staging = out / ".model-download"
    shutil.rmtree(staging, ignore_errors=True)
    archive = s3files.download_file(clients.s3, model_uri, out / ".model.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(staging, filter="data")
    archive.unlink()
    if not (staging / RESULT_FILE).exists():
        return _model_only_result(staging, out, description or {})
    raw = json.loads((staging / RESULT_FILE).read_text())
    container_out = str(PurePosixPath(raw["model_dir"]).parent)  # the container's output folder (SM_MODEL_DIR)
    result = job.result_type.model_validate(_replace_prefix(raw, container_out, str(out)))
    (staging / RESULT_FILE).unlink()
    # result.json first: a run killed while moving leaves no complete model/ beside it, so it is fetched again.
    (out / RESULT_FILE).write_text(result.model_dump_json(indent=2))
    for entry in staging.iterdir():
        target = out / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        entry.replace(target)
    staging.rmdir()
    return result


def _model_only_result(staging: Path, out: Path, description: dict) -> TrainingResult:
    """The model folder of a job whose script reports nothing of ours: steps and tokens unknown (0), the training
    loss and run time from the job's description (a FinalMetricDataList metric named *train*loss*,
    TrainingTimeInSeconds)."""
    model_dir = out / MODEL_DIR
    shutil.rmtree(model_dir, ignore_errors=True)
    staging.replace(model_dir)
    metrics = {m["MetricName"].lower(): m["Value"] for m in description.get("FinalMetricDataList", [])}
    losses = [v for k, v in metrics.items() if "train" in k and "loss" in k]
    result = TrainingResult(model_dir=str(model_dir), global_step=0, train_loss=losses[0] if losses else None,
                            loss_curve=[], resumed_from_checkpoint=None,
                            train_runtime_s=float(description.get("TrainingTimeInSeconds", 0)), real_tokens=0,
                            padded_tokens=0, tokens_per_second=0.0)
    (out / RESULT_FILE).write_text(result.model_dump_json(indent=2))
    mark_complete(model_dir)
    return result


def _replace_prefix(value, old: str, new: str):
    if isinstance(value, str):
        return new + value[len(old):] if value == old or value.startswith(old + "/") else value
    if isinstance(value, dict):
        return {k: _replace_prefix(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_prefix(v, old, new) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------------------
# Processing (data preparation)


def run_sagemaker_processing(job: BaseModel, key: str, spec: SageMakerSpec, cache_dir: str | Path, *,
                             localize: Callable[[Path], None], clients: AwsClients | None = None,
                             on_output: Callable[[str], None] = print,
                             on_estimate: Callable[[CostEstimate], None] | None = None) -> tuple[Path, bool]:
    """Run a preparation step (a job model with entry_module, input_paths, output_path) as a processing job whose
    output folder holds <key>/; download that into <cache_dir>/<key> and let `localize` rewrite the container's paths
    in it. Returns the folder and whether it was there already.

    A complete output already in S3 (a run from another machine) is downloaded without a job."""
    out = Path(cache_dir) / key
    with build_once(out) as needed:
        if not needed:
            return out, True
        clients = clients or clients_for(spec)
        layout = S3Layout(spec)
        result_uri = s3files.join_s3(layout.processing_output(key), key) + "/"
        if not s3files.object_exists(clients.s3, s3files.join_s3(result_uri, COMPLETE_MARKER)):
            def launch(name: str) -> dict:
                with tempfile.TemporaryDirectory() as tmp:
                    job_file = Path(tmp) / "job" / JOB_FILE
                    job_file.parent.mkdir()
                    inputs = stage_inputs(clients, layout, job)
                    job_file.write_text(json.dumps(payload_for(job, inputs), indent=2))
                    inputs["job"] = stage_folder(clients, layout, "job", job_file.parent)
                return processing_request(name, key, spec, layout, inputs, stage_code(clients, layout))

            _run_job(clients, spec, PROCESSING, job_prefix(spec, "pr", key), Path(cache_dir) / "sagemaker-stand-in",
                     launch, spec.processing, Callbacks(on_output, None, on_estimate))
        s3files.download_prefix(clients.s3, result_uri, out)
        localize(out)
    return out, False
