"""Shared pieces of the causal-LM tests: the real Dolly sample, a tiny Llama or Mixtral built on it, and small jobs."""

from __future__ import annotations

from pathlib import Path

from llm_finetune.data.intake import ValidatedData
from llm_finetune.data.shapes import load_data
from llm_finetune.models.tiny_causal import build_tiny_causal_for_instructions
from llm_finetune.recipes import (
    ATTENTION_MODULES,
    MIXTRAL_EXPERT_PARAMETERS,
    InstructionData,
    LoraSpec,
    SFTParams,
    TinyCausalSpec,
)
from llm_finetune.training.causal_lm import CausalTrainJob
from tests.conftest import SHARED_DATA

DOLLY = SHARED_DATA / "dolly"


def dolly_data(**settings) -> InstructionData:
    """The Dolly sample (26 train, 6 validation records); max_length 192 keeps steps fast (6 train records then
    have no room left for a response and are dropped)."""
    values = {"train_uri": str(DOLLY / "train.jsonl"), "validation_uri": str(DOLLY / "validation.jsonl"),
              "max_length": 192, "overlong_records": "drop"}
    return InstructionData(**{**values, **settings})


def tiny_spec(family: str = "llama") -> TinyCausalSpec:
    return TinyCausalSpec(family=family, vocab_size=1000, hidden_size=32, intermediate_size=64,
                          num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2)


def tiny_base(work: Path, family: str = "llama", data: InstructionData | None = None) -> tuple[str, ValidatedData]:
    """A tiny model (tokenizer trained on the Dolly sample) and the checked Dolly splits."""
    data = data or dolly_data()
    validated = load_data(data, work)
    return str(build_tiny_causal_for_instructions(tiny_spec(family), data, validated, work / "models")), validated


def lora_for(family: str, **settings) -> LoraSpec:
    """LoRA on every linear layer of a Llama; on a Mixtral, attention plus the fused experts (router left frozen)."""
    if family == "mixtral":
        base = {"target_modules": ATTENTION_MODULES, "target_parameters": MIXTRAL_EXPERT_PARAMETERS}
    else:
        base = {"target_modules": "all-linear"}
    return LoraSpec(**{"r": 8, "alpha": 16, "dropout": 0.0, **base, **settings})


def small_job(base: str, validated: ValidatedData, output_dir: Path, *, family: str = "llama",
              data: InstructionData | None = None, lora: LoraSpec | None = None, **params) -> CausalTrainJob:
    values = {"max_steps": 12, "learning_rate": 1e-2, "per_device_train_batch_size": 4, "logging_steps": 2,
              "save_steps": 6, "warmup": 0, "precision": "fp32",
              "packing": False}  # one record per row: tests count rows and compare per-record losses
    return CausalTrainJob(base_model=base, validated=validated, data=data or dolly_data(), output_dir=str(output_dir),
                          lora=lora or lora_for(family), params=SFTParams(**{**values, **params}))
