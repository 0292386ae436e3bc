"""Shared pieces of the text-classification tests: the real IMDB sample, a tiny GPT-2 built on it, small jobs."""

from __future__ import annotations

from pathlib import Path

from llm_finetune.data.intake import ValidatedData
from llm_finetune.data.shapes import load_data
from llm_finetune.models.base import base_model_path
from llm_finetune.recipes import ClassificationData, ClassifierModelSpec, LoraSpec, TinyCausalSpec, TrainerParams
from llm_finetune.training.classification import ClassificationTrainJob, classification_job
from tests.conftest import SHARED_DATA

IMDB = SHARED_DATA / "imdb"


def imdb_data(**settings) -> ClassificationData:
    """The IMDB sample cut to 48 training records of 48 tokens: a few seconds per tiny run."""
    values = {"train_uri": str(IMDB / "train.jsonl"), "validation_uri": str(IMDB / "validation.jsonl"),
              "max_train_records": 48, "max_validation_records": 24, "max_length": 48}
    return ClassificationData(**{**values, **settings})


def tiny_gpt2(**settings) -> ClassifierModelSpec:
    values = {"family": "gpt2", "vocab_size": 600, "hidden_size": 32, "intermediate_size": 64,
              "num_attention_heads": 4, "num_hidden_layers": 2}
    return ClassifierModelSpec(tiny=TinyCausalSpec(**{**values, **settings}))


def tiny_base(work: Path, data: ClassificationData | None = None,
              model: ClassifierModelSpec | None = None) -> tuple[str, ValidatedData]:
    data = data or imdb_data()
    validated = load_data(data, work)
    return base_model_path(model or tiny_gpt2(), data, validated, work / "models"), validated


def small_job(base: str, validated: ValidatedData, work: Path, *, data: ClassificationData | None = None,
              lora: LoraSpec | None = None, **params) -> ClassificationTrainJob:
    values = {"max_steps": 6, "learning_rate": 3e-3, "per_device_train_batch_size": 8, "logging_steps": 2,
              "save_steps": 100, "warmup": 0}
    return classification_job(base, validated, data or imdb_data(), lora or LoraSpec(enabled=False),
                              TrainerParams(**{**values, **params}), work)
