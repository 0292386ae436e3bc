"""Helpers for tests of the shared release subflow: evidence that passes the tiny recipe's gate, a recipe that
releases to SageMaker (moto + stand-in), a second trained model without training one, and the release call."""

from __future__ import annotations

from flows.release import ReleaseOutcome, release_model
from llm_finetune.data.summarization import summarization_test_cases
from llm_finetune.evaluation.comparison import ReleaseEvidence
from llm_finetune.kinds import EndpointTestCase
from llm_finetune.training.job import TrainingResult
from tests.conftest import small_recipe
from tests.sagemaker_helpers import HF_INFERENCE_IMAGE, ROLE_ARN, package_spec, unique

# A release-plumbing test: EVIDENCE clears the recipe's min_metrics alone, and the gate never pauses for a reviewer.
GATE_PASSES = ("approval.min_gain_over_base={}", "approval.require_gain=false", "approval.manual_review=false")
EVIDENCE = ReleaseEvidence(base_metrics={"rougeL": 0.01}, finetuned_metrics={"rougeL": 0.1}, samples=[],
                           report_markdown="| metric | base | fine-tuned | gain |", num_records=3)


def sagemaker_recipe(work_dir, moto_endpoint, *overrides):
    bucket_prefix = package_spec(moto_endpoint).s3_prefix
    name = unique("released")
    return small_recipe(
        work_dir, f"registry.model_name={name}",
        f"registry.sagemaker={{model_package_group: {name}, s3_prefix: '{bucket_prefix}', "
        f"image_uri: '{HF_INFERENCE_IMAGE}', inference_instance_types: [ml.g4dn.xlarge]}}",
        "endpoint.target=sagemaker",
        f"endpoint.sagemaker={{role_arn: '{ROLE_ARN}', instance_type: ml.g4dn.xlarge, poll_interval_s: 0.2}}",
        *overrides,
    )


def base_as_trained(trained: dict, fingerprint: str) -> TrainingResult:
    """The untrained base model reported as another training run: a second registered version, no training."""
    return trained["result"].model_copy(update={"model_dir": trained["base"], "fingerprint": fingerprint})


def release(recipe, trained: dict, training: TrainingResult | None = None,
            cases: list[EndpointTestCase] | None = None) -> ReleaseOutcome:
    """The release subflow on the tiny trained model (or `training`), tested with validation records (or `cases`)."""
    if cases is None:
        cases = summarization_test_cases(trained["validated"], recipe.data, recipe.endpoint.num_test_records)
    return release_model(recipe, trained["base"], "data-fp", training or trained["result"], EVIDENCE, cases,
                         kind="text2text-generation")
