"""Helpers for SageMaker backend tests: recipe settings pointing at the moto stand-in, a tiny seq2seq job."""

from __future__ import annotations

import itertools
from pathlib import Path

from llm_finetune.recipes import SageMakerSpec

ROLE = "arn:aws:iam::123456789012:role/llmft-sagemaker"
_prefixes = itertools.count()


def stand_in_spec(endpoint_url: str, **updates) -> SageMakerSpec:
    """SageMaker settings for the moto stand-in; each call gets its own S3 prefix (moto's state lives all session)."""
    base = {"role_arn": ROLE, "bucket": "llmft-tests", "prefix": f"run-{next(_prefixes)}",
            "endpoint_url": endpoint_url, "poll_initial_s": 0.2, "poll_max_s": 1.0,
            "training": {"instance_type": "ml.g4dn.xlarge"}}
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return SageMakerSpec.model_validate(base)


def stand_in_overrides(endpoint_url: str, prefix: str) -> tuple[str, ...]:
    """The same settings as recipe overrides, for flow tests."""
    return (f"sagemaker={{role_arn: '{ROLE}', bucket: llmft-tests, prefix: {prefix}, endpoint_url: '{endpoint_url}', "
            "poll_initial_s: 0.2, poll_max_s: 1.0, training: {instance_type: ml.g4dn.xlarge}}",)


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
