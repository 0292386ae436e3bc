"""JumpStart models (`meta-textgeneration-llama-2-7b`, `huggingface-llm-falcon-7b-bf16`, ...) without the network.

Resolving a JumpStart model id needs JumpStart's S3 manifest, so a recipe carries the resolved fields
(`JumpStartSpec`: images, base weights, training script, default hyperparameters, whether a EULA must be accepted);
`resolve_jumpstart_spec` fills them in when online. From a spec this module builds the boto3 requests of a fine-tune
(`create_training_job`) and a deployment (`create_model`); a gated model (Llama 2) is refused until `accept_eula`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from llm_finetune.aws import aws_region
from llm_finetune.backends.service_model import checked
from llm_finetune.data.qa import qa_records
from llm_finetune.errors import RecipeError
from llm_finetune.recipes import InstructionData, QAData
from llm_finetune.recipes.jumpstart import JumpStartSpec

__all__ = ["EulaNotAcceptedError", "JumpStartSpec", "model_request", "resolve_jumpstart_spec", "training_job_request"]


class EulaNotAcceptedError(ValueError):
    """A gated JumpStart model was about to be trained or deployed without `accept_eula: true`."""


def _check_eula(spec: JumpStartSpec) -> None:
    if spec.requires_eula and not spec.accept_eula:
        raise EulaNotAcceptedError(f"JumpStart model '{spec.model_id}' is gated behind a EULA: read it and set "
                                   "accept_eula: true in the recipe's jumpstart section")


def _eula(source: dict, eula: bool) -> dict:
    """The S3 data source with the EULA accepted on it when the model is gated."""
    return {**source, "ModelAccessConfig": {"AcceptEula": True}} if eula else source


def _weights_source(uri: str, eula: bool) -> dict:
    """A model's ModelDataSource.S3DataSource: a prefix of files, or one model.tar.gz object."""
    prefix = uri.endswith("/")
    return _eula({"S3Uri": uri, "S3DataType": "S3Prefix" if prefix else "S3Object",
                  "CompressionType": "None" if prefix else "Gzip"}, eula)


def _model_channel(uri: str, eula: bool) -> dict:
    """The base weights as a training job's `model` channel, as the sagemaker SDK sends JumpStart's: an S3Prefix
    (training channels know no S3Object; a prefix naming one archive is that archive), uncompressed, content type
    application/x-sagemaker-model (JumpStart's script unpacks an archive itself)."""
    return {"ChannelName": "model", "ContentType": "application/x-sagemaker-model", "InputMode": "File",
            "DataSource": {"S3DataSource": _eula({"S3Uri": uri, "S3DataType": "S3Prefix",
                                                  "S3DataDistributionType": "FullyReplicated"}, eula)}}


def training_job_request(
    spec: JumpStartSpec,
    *,
    job_name: str,
    role_arn: str,
    train_s3_uri: str,
    output_s3_uri: str,
    instance_type: str,
    hyperparameters: dict[str, object] | None = None,
    validation_s3_uri: str | None = None,
    max_runtime_s: int = 86_400,
) -> dict:
    """`create_training_job` arguments of a JumpStart fine-tune: JumpStart's image and script, the base weights as
    the `model` channel (EULA accepted on it for gated models), the data as `training` (and `validation`)."""
    _check_eula(spec)
    if not (spec.training_image_uri and spec.training_model_uri and spec.training_script_uri):
        raise ValueError(f"JumpStart model '{spec.model_id}': training_image_uri, training_model_uri and "
                         "training_script_uri are needed to fine-tune (resolve_jumpstart_spec fills them)")
    params = {**spec.default_hyperparameters, **{k: str(v) for k, v in (hyperparameters or {}).items()}}
    params |= {"sagemaker_program": "transfer_learning.py", "sagemaker_submit_directory": spec.training_script_uri}
    data = {"training": train_s3_uri, "validation": validation_s3_uri}
    channels = [_model_channel(spec.training_model_uri, spec.requires_eula)] + [
        {"ChannelName": name, "DataSource": {"S3DataSource": {
            "S3Uri": uri, "S3DataType": "S3Prefix", "S3DataDistributionType": "FullyReplicated"}}}
        for name, uri in data.items() if uri]
    algorithm = {"TrainingImage": spec.training_image_uri, "TrainingInputMode": "File"}
    if spec.metric_definitions:
        algorithm["MetricDefinitions"] = [dict(m) for m in spec.metric_definitions]
    return checked("CreateTrainingJob", {
        "TrainingJobName": job_name,
        "RoleArn": role_arn,
        "AlgorithmSpecification": algorithm,
        "HyperParameters": params,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": output_s3_uri},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 256},
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_s},
        "EnableNetworkIsolation": True,  # as the SDK sends JumpStart jobs: the weights come as a channel
        "Tags": [{"Key": "sagemaker-sdk:jumpstart-model-id", "Value": spec.model_id}],
    })


def model_request(spec: JumpStartSpec, *, model_name: str, role_arn: str, model_data_uri: str | None = None) -> dict:
    """`create_model` arguments serving a JumpStart model (or its fine-tuned weights at `model_data_uri`); a gated
    model's weights are passed as ModelDataSource with the EULA accepted, as SageMaker requires."""
    _check_eula(spec)
    container = {"Image": spec.inference_image_uri, "Environment": dict(spec.inference_environment),
                 "ModelDataSource": {"S3DataSource": _weights_source(model_data_uri or spec.inference_model_uri,
                                                                     spec.requires_eula)}}
    return checked("CreateModel", {
        "ModelName": model_name, "ExecutionRoleArn": role_arn, "PrimaryContainer": container,
        "EnableNetworkIsolation": True, "Tags": [{"Key": "sagemaker-sdk:jumpstart-model-id", "Value": spec.model_id}]})


# ---------------------------------------------------------------------------------------------------------------
# Training data in the format of JumpStart's text-generation fine-tunes

TRAIN_FILE, VALIDATION_FILE, TEMPLATE_FILE = "train.jsonl", "validation.jsonl", "template.json"
# JumpStart's instruction-tuning prompt (its example notebooks' template.json); `{...}` name the record's fields.
PREAMBLE = ("Below is an instruction that describes a task, paired with an input that provides further context. "
            "Write a response that appropriately completes the request.")
PROMPT = "\n\n### Instruction:\n{instruction}\n\n### Input:\n{context}\n\n"
COMPLETION = " {response}"


def instruction_template(system_prompt: str | None = None) -> dict[str, str]:
    """template.json: the script builds each example as prompt.format(**record) + completion.format(**record); a
    recipe's system prompt replaces the preamble (its braces doubled, as str.format would read them as fields)."""
    preamble = system_prompt.replace("{", "{{").replace("}", "}}") if system_prompt else PREAMBLE
    return {"prompt": preamble + PROMPT, "completion": COMPLETION}


def instruction_rows(job, split: str, limit: int | None):
    """A split's checked records as JumpStart instruction rows {"instruction", "context", "response"}: instruction
    data by the recipe's field names; SQuAD-style QA as question, context and the first gold answer."""
    data = job.data
    if isinstance(data, QAData):
        for r in qa_records(job.validated, split, data, limit):
            yield {"instruction": r["question"], "context": r["context"], "response": r["answers"][0]}
        return
    for record in job.validated.load(split, limit):
        context = record.get(data.context_field) if data.context_field else None
        yield {"instruction": record[data.instruction_field], "context": context or "",
               "response": record[data.response_field]}


def write_instruction_data(job, folder: Path) -> dict[str, Path]:
    """The job's checked records (train, and validation when there are any) as JumpStart's instruction data:
    <folder>/training/{train.jsonl, template.json} and <folder>/validation/{validation.jsonl, template.json}, each
    record {"instruction", "context", "response"} (see instruction_rows). Returns channel -> folder."""
    data = job.data
    limits = {"train": data.max_train_records, "validation": data.max_validation_records}
    template = json.dumps(instruction_template(getattr(data, "system_prompt", None)), indent=2)
    channels = {}
    for split, channel, name in (("train", "training", TRAIN_FILE), ("validation", "validation", VALIDATION_FILE)):
        if not job.validated.num_records.get(split):
            continue
        out = folder / channel
        out.mkdir(parents=True, exist_ok=True)
        with open(out / name, "w", encoding="utf-8") as f:
            for row in instruction_rows(job, split, limits[split]):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        (out / TEMPLATE_FILE).write_text(template)
        channels[channel] = out
    return channels


def instruction_hyperparameters(spec: JumpStartSpec, job) -> dict[str, str]:
    """The recipe's training settings as JumpStart hyperparameters. `instruction_tuned`, `epoch` and `learning_rate`
    always; the others only where the model's defaults name them (JumpStart's script rejects names it lacks). Epochs
    are whole in JumpStart; max_steps has no JumpStart counterpart."""
    params, lora = job.params, job.lora
    values = {"instruction_tuned": "True", "epoch": str(max(1, round(params.epochs))),
              "learning_rate": str(params.learning_rate)}
    optional = {"per_device_train_batch_size": params.per_device_train_batch_size,
                "gradient_accumulation_steps": params.gradient_accumulation_steps, "seed": params.seed,
                "max_input_length": job.data.max_length}
    if lora.enabled:
        optional |= {"lora_r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout}
    values |= {k: str(v) for k, v in optional.items() if k in spec.default_hyperparameters}
    return values


def training_data(spec: JumpStartSpec, job, folder: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """The job's data in JumpStart's format and the hyperparameters that go with it, by the job's data shape:
    instruction data and generative QA (question + context -> answer) go as instruction rows; other jobs get a
    RecipeError naming what to change."""
    if isinstance(getattr(job, "data", None), (InstructionData, QAData)) and hasattr(job, "validated"):
        return write_instruction_data(job, folder), instruction_hyperparameters(spec, job)
    raise RecipeError(f"sagemaker.jumpstart: a JumpStart fine-tune takes instruction or generative-QA records here, not a "
                      f"{type(job).__name__}; remove sagemaker.jumpstart or train with this project's trainer")


def resolve_jumpstart_spec(model_id: str, model_version: str = "*", *, region: str | None = None,
                           training_instance_type: str = "ml.g5.12xlarge",
                           inference_instance_type: str = "ml.g5.2xlarge") -> JumpStartSpec:
    """Ask JumpStart (network: its S3 manifest) for a model's images, weights, script and defaults."""
    region = region or aws_region()
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    from sagemaker.core import hyperparameters, image_uris, model_uris, script_uris
    from sagemaker.core.jumpstart.accessors import JumpStartModelsAccessor

    specs = JumpStartModelsAccessor.get_model_specs(region=region, model_id=model_id, version=model_version)
    ids = {"region": region, "model_id": model_id, "model_version": model_version}
    trainable = bool(getattr(specs, "training_supported", False))
    return JumpStartSpec(
        model_id=model_id, model_version=model_version,
        requires_eula=bool(getattr(specs, "gated_bucket", False) or getattr(specs, "hosting_eula_key", None)),
        inference_image_uri=image_uris.retrieve(framework=None, image_scope="inference",
                                                instance_type=inference_instance_type, **ids),
        inference_model_uri=model_uris.retrieve(model_scope="inference", **ids),
        inference_environment={e.name: str(e.default) for e in getattr(specs, "inference_environment_variables", [])},
        training_image_uri=image_uris.retrieve(framework=None, image_scope="training",
                                               instance_type=training_instance_type, **ids) if trainable else None,
        training_model_uri=model_uris.retrieve(model_scope="training", **ids) if trainable else None,
        training_script_uri=script_uris.retrieve(script_scope="training", **ids) if trainable else None,
        default_hyperparameters=hyperparameters.retrieve_default(**ids) if trainable else {},
        metric_definitions=[{"Name": m["Name"], "Regex": m["Regex"]} for m in getattr(specs, "metrics", None) or []],
    )
