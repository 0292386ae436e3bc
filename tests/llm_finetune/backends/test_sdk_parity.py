"""Our SageMaker requests against the ones the sagemaker SDK (3.27) builds for the same job: ModelTrainer for
CreateTrainingJob, FrameworkProcessor for CreateProcessingJob, the SDK Session's create_model /
create_endpoint_config (production_variant) / create_endpoint, and create_model_package_from_containers.

The SDK runs against the moto server up to its Create* call, where a botocore hook records the parameters it sends
and stops it (nothing is created). Each comparison drops only the fields listed, each with the reason they may
differ, and then requires the rest to be equal: a field either side adds, drops or encodes differently fails it.
(The SDK asks IAM SimulatePrincipalPolicy on the way, which moto lacks: the server logs a traceback, the SDK goes on.)
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llm_finetune.aws import s3_client, sagemaker_client
from llm_finetune.backends.model_packages import register_model_package
from llm_finetune.backends.sagemaker import (
    CHECKPOINT_LOCAL_PATH,
    PROCESSING_ROOT,
    S3Layout,
    clients_for,
    ensure_bucket,
    processing_request,
    training_image,
    training_request,
)
from llm_finetune.backends.sagemaker_endpoint import deploy_model_package
from llm_finetune.backends.sourcedir import ENTRY_SCRIPT
from llm_finetune.training.seq2seq import seq2seq_job
from tests.conftest import small_recipe
from tests.sagemaker_helpers import HF_INFERENCE_IMAGE, endpoint_spec, jobs_spec, package_spec, unique

SHA = "0123456789abcdef" * 4  # a stand-in content hash: staging is not under test here


class _Sent(Exception):
    """Stops the SDK once its request is recorded."""


@dataclass
class Sdk:
    session: Any  # sagemaker.core.helper.session_helper.Session
    sent: dict[str, dict]  # operation -> the parameters the SDK sent


@pytest.fixture
def sdk(moto_endpoint, monkeypatch) -> Sdk:
    """A sagemaker.core Session on the moto server, recording the Create* parameters it sends."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")  # moto has no IAM role to look up
    from sagemaker.core.helper.session_helper import Session

    boto_session = boto3.Session(region_name="us-east-1")
    sent: dict[str, dict] = {}

    def record(params: dict, model, **_) -> None:
        sent[model.name] = copy.deepcopy(params)
        raise _Sent

    # registered before any client is made: clients copy the session's handlers when created
    for operation in ("CreateTrainingJob", "CreateProcessingJob", "CreateModel", "CreateEndpointConfig",
                      "CreateEndpoint", "CreateModelPackage"):
        boto_session.events.register(f"provide-client-params.sagemaker.{operation}", record)
    return Sdk(Session(boto_session=boto_session, default_bucket="llmft-jobs"), sent)


def drop(request: dict, *paths: str) -> dict:
    """A deep copy without the dotted paths (absent ones are fine)."""
    out = copy.deepcopy(request)
    for path in paths:
        *parents, last = path.split(".")
        node = out
        for key in parents:
            node = node.get(key, {})
        node.pop(last, None)
    return out


def toolkit_view(hyperparameters: dict[str, str]) -> dict:
    """Hyperparameters as the training toolkit in the DLC reads them (sagemaker-training's read_hyperparameters):
    each value through json.loads, kept as the raw string where that fails (the older sagemaker-containers kept
    every value raw once one failed)."""
    def value(raw: str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return {k: value(v) for k, v in hyperparameters.items()}


def source_dir(tmp_path: Path) -> str:
    """A source folder for the SDK to upload (ours goes as sourcedir.tar.gz, staged separately)."""
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / ENTRY_SCRIPT).write_text("print('entry')\n")
    return str(folder)


# ---------------------------------------------------------------------------------------------------------------
# Training

# Fields of CreateTrainingJob that may differ, and why.
TRAINING_IGNORED = {
    "TrainingJobName": "both name jobs by time; ours also by fingerprint (a re-run attaches to it)",
    "Tags": "ours carries the llmft:fingerprint tag a re-run finds the job by; the SDK sends none",
    "OutputDataConfig.CompressionType": "the SDK spells out the service default (GZIP)",
    # The SDK's SourceCode runs the script through its own drivers (the code and sm_drivers channels, sm_train.sh as
    # the entrypoint); ours runs it through the DLC's training toolkit (sagemaker_program, _submit_directory).
    "AlgorithmSpecification.ContainerEntrypoint": "SDK: its sm_train.sh driver; ours: the image's toolkit",
    "AlgorithmSpecification.ContainerArguments": "as ContainerEntrypoint",
}
SDK_CODE_CHANNELS = {"code", "sm_drivers"}  # the SDK's SourceCode delivery, see above


def training_job_for(tmp_path: Path):
    recipe = small_recipe(tmp_path)
    training = recipe.training.model_copy(update={"backend": "sagemaker"})
    return seq2seq_job("base-model", "dataset", "data-fp", recipe.data.prompt_template, training, tmp_path)


def sdk_training_request(sdk: Sdk, spec, layout: S3Layout, key: str, channels: dict[str, str],
                         hyperparameters: dict, source: str) -> dict:
    """What ModelTrainer sends for a job configured like ours."""
    from sagemaker.core.shapes import CheckpointConfig
    from sagemaker.core.training.configs import Compute, InputData, OutputDataConfig, SourceCode, StoppingCondition
    from sagemaker.train.model_trainer import ModelTrainer

    t = spec.training
    trainer = ModelTrainer(
        sagemaker_session=sdk.session, role=spec.role_arn, training_image=training_image(t, spec.region),
        base_job_name="llmft-parity", source_code=SourceCode(source_dir=source, entry_script=ENTRY_SCRIPT),
        compute=Compute(instance_type=t.instance_type, instance_count=t.instance_count,
                        volume_size_in_gb=t.volume_size_gb, enable_managed_spot_training=t.spot),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=t.max_runtime_s,
                                             max_wait_time_in_seconds=t.max_wait_s),
        checkpoint_config=CheckpointConfig(s3_uri=layout.checkpoints(key), local_path=CHECKPOINT_LOCAL_PATH),
        output_data_config=OutputDataConfig(s3_output_path=layout.training_output),
        hyperparameters=hyperparameters)
    with pytest.raises(_Sent):
        trainer.train(input_data_config=[InputData(channel_name=name, data_source=uri)
                                         for name, uri in channels.items()], wait=False, logs=False)
    return sdk.sent["CreateTrainingJob"]


def comparable_training(request: dict) -> dict:
    out = drop(request, *TRAINING_IGNORED)
    out["InputDataConfig"] = sorted((c for c in out["InputDataConfig"] if c["ChannelName"] not in SDK_CODE_CHANNELS),
                                    key=lambda c: c["ChannelName"])
    out["HyperParameters"] = toolkit_view(out["HyperParameters"])
    return out


@pytest.mark.parametrize("settings", [
    {"spot": True, "max_runtime_s": 3600, "max_wait_s": 5400, "instance_count": 2, "volume_size_gb": 200},
    {"spot": False, "max_runtime_s": 7200},
], ids=["spot-2-instances", "on-demand"])
def test_training_request_matches_the_model_trainers(sdk, moto_endpoint, tmp_path, settings):
    spec = jobs_spec(moto_endpoint, training=settings)
    ensure_bucket(clients_for(spec), spec)
    layout, job = S3Layout(spec), training_job_for(tmp_path)
    key = Path(job.output_dir).name
    channels = {"base_model": layout.input("base_model", SHA), "dataset": layout.input("dataset", SHA)}
    ours = training_request("llmft-tr-parity", key, job, spec, layout, channels, layout.code(SHA))
    # The same values, handed to the SDK decoded: its encoding of them is what is compared.
    theirs = sdk_training_request(sdk, spec, layout, key, channels, toolkit_view(ours["HyperParameters"]),
                                  source_dir(tmp_path))

    assert comparable_training(ours) == comparable_training(theirs)
    assert {c["ChannelName"] for c in theirs["InputDataConfig"]} - set(channels) == SDK_CODE_CHANNELS
    # what the toolkit needs to run our script from our source tarball, in the region's S3
    assert toolkit_view(ours["HyperParameters"])["sagemaker_program"] == ENTRY_SCRIPT
    assert toolkit_view(ours["HyperParameters"])["sagemaker_submit_directory"] == layout.code(SHA)
    assert toolkit_view(ours["HyperParameters"])["sagemaker_region"] == spec.region


def test_hyperparameters_are_json_so_the_toolkit_reads_strings_back_as_strings(sdk, moto_endpoint, tmp_path):
    """The SDK (3.x) sends a string value unquoted; the toolkit then turns a string that reads as JSON ("1e5",
    "true") into a number or a bool. Ours are JSON strings: every value reads back as what was meant."""
    spec = jobs_spec(moto_endpoint)
    ensure_bucket(clients_for(spec), spec)
    layout, job = S3Layout(spec), training_job_for(tmp_path)
    key = Path(job.output_dir).name
    ours = training_request("llmft-tr-parity", key, job, spec, layout, {}, layout.code(SHA))
    meant = {"piece": "1234e5", "flag": "true", "text": "a b"}
    theirs = sdk_training_request(sdk, spec, layout, key, {}, meant, source_dir(tmp_path))
    assert toolkit_view(theirs["HyperParameters"]) == {"piece": 1234e5, "flag": True, "text": "a b"}
    assert all(isinstance(json.loads(v), str) for v in ours["HyperParameters"].values())


# ---------------------------------------------------------------------------------------------------------------
# Processing

# Fields of CreateProcessingJob that may differ, and why.
PROCESSING_IGNORED = {
    "ProcessingJobName": "as TrainingJobName",
    "Tags": "as for training",
    # FrameworkProcessor delivers code as an input folder holding sourcedir.tar.gz plus a runproc.sh input and runs
    # `runproc.sh <arguments>` (unpack, `python3 <code> "$@"`); ours is one input, the tarball, and the same steps
    # as one `sh -c` line (PROCESSING_COMMAND).
    "AppSpecification.ContainerEntrypoint": "SDK: its runproc.sh; ours: PROCESSING_COMMAND",
    "AppSpecification.ContainerArguments": "SDK: the script's arguments; ours: inside PROCESSING_COMMAND",
}
CODE_INPUTS = {"code", "entrypoint"}  # the code delivery, see above


def comparable_processing(request: dict) -> dict:
    out = drop(request, *PROCESSING_IGNORED)
    # S3CompressionType: the SDK spells out the service default ("None").
    out["ProcessingInputs"] = sorted(
        (drop(i, "S3Input.S3CompressionType") for i in out["ProcessingInputs"] if i["InputName"] not in CODE_INPUTS),
        key=lambda i: i["InputName"])
    return out


def test_processing_request_matches_the_framework_processors(sdk, moto_endpoint, tmp_path):
    from sagemaker.core.processing import FrameworkProcessor
    from sagemaker.core.shapes import ProcessingInput, ProcessingOutput, ProcessingS3Input, ProcessingS3Output

    spec = jobs_spec(moto_endpoint, processing={"instance_type": "ml.m5.xlarge", "volume_size_gb": 50,
                                                "max_runtime_s": 1800})
    ensure_bucket(clients_for(spec), spec)
    layout, p = S3Layout(spec), spec.processing
    inputs = {"job": layout.input("job", SHA), "dataset": layout.input("dataset", SHA)}
    ours = processing_request("llmft-pr-parity", "prep-key", spec, layout, inputs, layout.code(SHA))

    processor = FrameworkProcessor(
        image_uri=training_image(p, spec.region), role=spec.role_arn, instance_count=p.instance_count,
        instance_type=p.instance_type, volume_size_in_gb=p.volume_size_gb, max_runtime_in_seconds=p.max_runtime_s,
        command=["python3"], sagemaker_session=sdk.session, base_job_name="llmft-parity")
    with pytest.raises(_Sent):
        # only S3DataType is required: input mode and distribution are the SDK's defaults
        processor.run(
            code=ENTRY_SCRIPT, source_dir=source_dir(tmp_path), arguments=["processing", "--root", PROCESSING_ROOT],
            inputs=[ProcessingInput(input_name=name, s3_input=ProcessingS3Input(
                s3_uri=uri, local_path=f"{PROCESSING_ROOT}/input/{name}", s3_data_type="S3Prefix"))
                for name, uri in inputs.items()],
            outputs=[ProcessingOutput(output_name="output", s3_output=ProcessingS3Output(
                s3_uri=layout.processing_output("prep-key"), local_path=f"{PROCESSING_ROOT}/output",
                s3_upload_mode="EndOfJob"))],
            wait=False, logs=False)
    theirs = sdk.sent["CreateProcessingJob"]

    assert comparable_processing(ours) == comparable_processing(theirs)
    assert {i["InputName"] for i in theirs["ProcessingInputs"]} - set(inputs) == CODE_INPUTS
    # Both run the entry script with the same arguments after unpacking sourcedir.tar.gz.
    assert ours["AppSpecification"]["ContainerEntrypoint"][-1].endswith(
        " ".join(["python3", ENTRY_SCRIPT, *theirs["AppSpecification"]["ContainerArguments"]]))


# ---------------------------------------------------------------------------------------------------------------
# Model, endpoint config, endpoint: the SDK's Session builders (create_model, create_endpoint_config with
# production_variant, create_endpoint), which its ModelBuilder and ModelPackage deploys go through.

HOSTING_OPERATIONS = ("CreateModel", "CreateEndpointConfig", "CreateEndpoint")
HOSTING_IGNORED = {"Tags": "CreateEndpoint: the SDK sends an empty list, which is no tags"}


def approved_package(sm) -> str:
    group = unique("parity")
    sm.create_model_package_group(ModelPackageGroupName=group)
    return sm.create_model_package(
        ModelPackageGroupName=group, ModelApprovalStatus="Approved", InferenceSpecification={
            "Containers": [{"Image": HF_INFERENCE_IMAGE, "ModelDataUrl": "s3://llmft-jobs/model.tar.gz"}],
            "SupportedContentTypes": ["application/json"], "SupportedResponseMIMETypes": ["application/json"]},
    )["ModelPackageArn"]


def comparable_model(request: dict) -> dict:
    """One container either way: the SDK sends a model package as Containers=[...], ours as PrimaryContainer
    (the API takes both for a single container)."""
    out = drop(request, "PrimaryContainer", "Containers", *HOSTING_IGNORED)
    out["containers"] = request.get("Containers") or [request["PrimaryContainer"]]
    return out


def recording_client(moto_url: str, *operations: str) -> tuple[Any, dict[str, dict]]:
    """Our SageMaker client on the moto server, and the parameters of the given calls it makes (first of each)."""
    sm, sent = sagemaker_client(moto_url), {}

    def record(params: dict, model, **_) -> None:  # None: a returned value would replace the call's parameters
        sent.setdefault(model.name, copy.deepcopy(params))

    for operation in operations:
        sm.meta.events.register(f"provide-client-params.sagemaker.{operation}", record)
    return sm, sent


def test_model_endpoint_config_and_endpoint_match_the_sdks(sdk, moto_endpoint):
    from sagemaker.core.helper.session_helper import production_variant

    sm, ours = recording_client(moto_endpoint, *HOSTING_OPERATIONS)
    spec, arn = endpoint_spec(), approved_package(sm)
    handle = deploy_model_package(sm, arn, spec, endpoint_name=spec.endpoint_name, version="1")
    assert set(ours) == set(HOSTING_OPERATIONS)

    session = sdk.session
    # defaults left to the SDK: variant name, weight
    variant = production_variant(model_name=handle.model_name, instance_type=spec.instance_type,
                                 initial_instance_count=spec.initial_instance_count)
    for create in (lambda: session.create_model(handle.model_name, role=spec.role_arn,
                                                container_defs={"ModelPackageName": arn}),
                   lambda: session.create_endpoint_config(handle.endpoint_config_name, [variant]),
                   lambda: session.create_endpoint(spec.endpoint_name, handle.endpoint_config_name, wait=False)):
        with pytest.raises(_Sent):
            create()
    theirs = sdk.sent

    assert comparable_model(ours["CreateModel"]) == comparable_model(theirs["CreateModel"])
    for operation in ("CreateEndpointConfig", "CreateEndpoint"):
        assert drop(ours[operation], *HOSTING_IGNORED) == drop(theirs[operation], *HOSTING_IGNORED)


# ---------------------------------------------------------------------------------------------------------------
# Model package: the SDK's create_model_package_from_containers (what ModelBuilder.register sends; its
# ModelPackage.create has a KeyError bug, so ours uses boto3).

PACKAGE_IGNORED = {
    "CertifyForMarketplace": "the SDK spells out the service default (false)",
    "SkipModelValidation": "the SDK spells out the service default (None)",
    "ModelMetrics.Bias": "the SDK's ModelMetrics sends it empty (no bias report), checked below",
    "ModelMetrics.Explainability": "as ModelMetrics.Bias",
}


def test_model_package_request_matches_the_sdks(sdk, moto_endpoint):
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.model_registry import create_model_package_from_containers

    sm, ours = recording_client(moto_endpoint, "CreateModelPackage")
    spec = package_spec(moto_endpoint)
    model_data = f"{spec.s3_prefix}/fp/model.tar.gz"
    register_model_package(sm, s3_client(moto_endpoint), spec, mlflow_name="summarizer", mlflow_version="3",
                           model_source=model_data, training_fingerprint="fp", metrics={"rougeL": 0.25})
    request = ours["CreateModelPackage"]

    # Our values (the container, metadata and description are ours to choose); the SDK's shapes and defaults.
    metrics = ModelMetrics(model_statistics=MetricsSource(
        content_type="application/json", s3_uri=request["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]))
    with pytest.raises(_Sent):
        create_model_package_from_containers(
            sdk.session, containers=request["InferenceSpecification"]["Containers"],
            content_types=["application/json"], response_types=["application/json"],
            inference_instances=spec.inference_instance_types, model_package_group_name=spec.model_package_group,
            model_metrics=metrics._to_request_dict(), description=request["ModelPackageDescription"],
            customer_metadata_properties=request["CustomerMetadataProperties"])

    theirs = sdk.sent["CreateModelPackage"]
    assert drop(request, *PACKAGE_IGNORED) == drop(theirs, *PACKAGE_IGNORED)
    assert theirs["ModelMetrics"]["Bias"] == theirs["ModelMetrics"]["Explainability"] == {}
    assert request["ModelApprovalStatus"] == "PendingManualApproval"  # the SDK's default: the approval gate decides
