"""Helpers for SageMaker tests on the moto stand-in: a bucket, a model package spec and an endpoint spec; the
SageMaker backend's settings (jobs) and a tiny seq2seq job's inputs."""

from __future__ import annotations

import uuid
from functools import cache
from pathlib import Path

from llm_finetune.aws import s3_client
from llm_finetune.recipes import SageMakerEndpointSpec, SageMakerModelPackageSpec, SageMakerSpec

# Inference images real recipes name (moto pulls no image; the stand-in serves the model in a double of each).
HF_INFERENCE_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-inference:"
                      "2.6.0-transformers4.51.3-cpu-py312-ubuntu22.04")
TGI_INFERENCE_IMAGE = ("763104351884.dkr.ecr.us-east-1.amazonaws.com/huggingface-pytorch-tgi-inference:"
                       "2.1.1-tgi1.4.0-gpu-py310-cu121-ubuntu20.04")
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


def jobs_spec(moto_url: str, **updates) -> SageMakerSpec:
    """The SageMaker backend's settings for the stand-in, under an S3 prefix of its own; updates merge per section."""
    base = {"role_arn": ROLE_ARN, "bucket": "llmft-jobs", "prefix": unique("run"), "endpoint_url": moto_url,
            "stand_in": True, "poll_initial_s": 0.2, "poll_max_s": 1.0, "training": {"instance_type": "ml.g4dn.xlarge"}}
    for key, value in updates.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return SageMakerSpec.model_validate(base)


def jobs_overrides(moto_url: str) -> tuple[str, ...]:
    """The same settings as a recipe override, for flow tests."""
    return (f"sagemaker={{role_arn: '{ROLE_ARN}', bucket: llmft-jobs, prefix: {unique('flow')}, "
            f"endpoint_url: '{moto_url}', stand_in: true, poll_initial_s: 0.2, poll_max_s: 1.0, "
            "training: {instance_type: ml.g4dn.xlarge}}",)


def tiny_seq2seq_inputs(work: Path, max_train_records: int = 32) -> dict:
    """A tiny T5 and its tokenized DialogSum sample: {'recipe', 'validated', 'base', 'prepared'}."""
    from llm_finetune.data.shapes import load_data
    from llm_finetune.data.summarization import prepare_summarization_dataset
    from llm_finetune.models.tiny_t5 import build_tiny_t5_for_summarization
    from tests.conftest import small_recipe

    recipe = small_recipe(work, f"data.max_train_records={max_train_records}", "data.max_validation_records=8")
    validated = load_data(recipe.data, work)
    base = build_tiny_t5_for_summarization(recipe.model.tiny, recipe.data, validated, work / "models")
    prepared = prepare_summarization_dataset(recipe.data, validated, str(base), work / "datasets")
    return {"recipe": recipe, "validated": validated, "base": str(base), "prepared": prepared}


JUMPSTART_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "dolly_llama2_7b_jumpstart.yaml"


def jumpstart_llama():
    """The shipped JumpStart Llama-2-7B spec (resolved fields written out), its EULA accepted."""
    from llm_finetune.recipes import InstructionRecipe, load_recipe

    recipe = load_recipe(JUMPSTART_RECIPE, InstructionRecipe, ["sagemaker.jumpstart.accept_eula=true"])
    return recipe.sagemaker.jumpstart


def jumpstart_overrides(moto_url: str) -> tuple[str, ...]:
    """The stand-in's settings (jobs_overrides) plus the shipped JumpStart Llama spec, for flow tests."""
    spec = jumpstart_llama().model_dump_json()
    return (*jobs_overrides(moto_url), f"sagemaker.jumpstart={spec}")


NEWEST_VERSIONS = 4  # per framework and scope: enough for any image this project picks, fast to list


@cache
def sdk_table_images(region: str, instance_type: str) -> frozenset[str]:
    """The Hugging Face and PyTorch DLCs (training, inference; the newest versions) the sagemaker SDK's image URI
    tables give for the region and instance type: what a job's image must be one of."""
    from sagemaker.core import image_uris

    found = set()
    for framework in ("huggingface", "pytorch"):
        config = image_uris.config_for_framework(framework)
        for scope in ("training", "inference"):
            for version, entry in list(config[scope]["versions"].items())[-NEWEST_VERSIONS:]:
                bases = [k for k in entry if k.startswith("pytorch")] if framework == "huggingface" else [None]
                for base in bases:
                    for py in (entry[base] if base else entry).get("py_versions", []):
                        try:
                            found.add(image_uris.retrieve(
                                framework=framework, region=region, version=version, base_framework_version=base,
                                py_version=py, instance_type=instance_type, image_scope=scope))
                        except ValueError:  # not for this region or processor
                            pass
    return frozenset(found)


def tiny_dolly_job(work: Path, base_model: str = "tiny-llama", *overrides: str):
    """A causal-LM job on the Dolly sample (recipe dolly_llama2_tiny.yaml); base_model "build" builds a tiny Llama."""
    from llm_finetune.data.shapes import load_data
    from llm_finetune.recipes import InstructionRecipe, load_recipe
    from llm_finetune.training.causal_lm import causal_job

    recipe = load_recipe(JUMPSTART_RECIPE.parent / "dolly_llama2_tiny.yaml", InstructionRecipe,
                         ["training.epochs=2", "data.max_validation_records=4", *overrides])
    validated = load_data(recipe.data, work)
    if base_model == "build":
        from llm_finetune.models.tiny_causal import build_tiny_causal_for_instructions

        base_model = str(build_tiny_causal_for_instructions(recipe.model.tiny, recipe.data, validated, work / "base"))
    return causal_job(base_model, validated, recipe.data, recipe.lora, recipe.training, work)
