"""The dialogue-summarization recipe (DialogSum -> FLAN-T5): seq2seq data, tiny T5, Seq2SeqTrainer, ROUGE."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from llm_finetune.recipes.base import (
    ApprovalPolicy,
    Backend,
    DataSource,
    EvaluationParams,
    RecipeBase,
    RegistrySpec,
    Strict,
    TrainingLoopParams,
)
from llm_finetune.recipes.paths import CwdPath


class SummarizationData(DataSource):
    """Dialogue/summary records and how they become model inputs."""

    shape_module: ClassVar[str] = "llm_finetune.data.summarization"  # its record rules: a DataShape named SHAPE

    dialogue_field: str = "dialogue"
    summary_field: str = "summary"
    id_field: str | None = Field("fname", description="Record id field, if the data has one")
    prompt_template: str = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "
    max_source_tokens: int = Field(512, gt=0)
    max_target_tokens: int = Field(128, gt=0)
    preparation_backend: Backend = Field(
        "local", description="Where prompts are built and tokenized: local, or sagemaker (a processing job running the "
        "same code, S3 in and out)")

    @field_validator("prompt_template")
    @classmethod
    def _has_dialogue_slot(cls, v: str) -> str:
        if "{dialogue}" not in v:
            raise ValueError("prompt_template must contain '{dialogue}'")
        return v


class TinyT5Spec(Strict):
    """A randomly initialised T5 built from a config, with a tokenizer trained on the training split (works offline)."""

    vocab_size: int = Field(2000, ge=100)
    d_model: int = 64
    d_ff: int = 128
    d_kv: int = 16
    num_heads: int = 4
    num_layers: int = 2
    num_decoder_layers: int = 2
    seed: int = 0


class ModelSpec(Strict):
    """Base model: a Hub id or local directory (e.g. google/flan-t5-base), or a tiny offline T5."""

    name_or_path: CwdPath | None = None
    tiny: TinyT5Spec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "ModelSpec":
        if (self.name_or_path is None) == (self.tiny is None):
            raise ValueError("set exactly one of 'name_or_path' or 'tiny'")
        return self


class Seq2SeqTrainingParams(TrainingLoopParams):
    """Hyperparameters passed to transformers' Seq2SeqTrainer."""

    LEGACY_KEYS: ClassVar[dict[str, str]] = {"num_train_epochs": "epochs", "warmup_steps": "warmup"}

    epochs: float = Field(3.0, gt=0)
    learning_rate: float = Field(5e-4, gt=0)
    group_by_length: bool = Field(True, description="Batch records of similar length to cut padding")

    @model_validator(mode="before")
    @classmethod
    def _legacy_keys(cls, values):
        """Recipes written before the training sections shared their names still load."""
        if not isinstance(values, dict):
            return values
        values = dict(values)
        for old, new in cls.LEGACY_KEYS.items():
            if old in values:
                if new in values:
                    raise ValueError(f"set '{new}' only ('{old}' is its former name)")
                values[new] = values.pop(old)
        return values


class SummarizationRecipe(RecipeBase):
    """Everything one dialogue-summarization run needs."""

    METRICS = dict.fromkeys(("rouge1", "rouge2", "rougeL", "rougeLsum"), "higher")

    name: str = "dialogsum-flan-t5"
    data: SummarizationData
    model: ModelSpec
    training: Seq2SeqTrainingParams = Field(default_factory=Seq2SeqTrainingParams)
    evaluation: EvaluationParams = Field(default_factory=EvaluationParams)
    registry: RegistrySpec = Field(
        default_factory=lambda: RegistrySpec(experiment="dialogsum-flan-t5", model_name="dialogsum-flan-t5")
    )
    approval: ApprovalPolicy = Field(
        default_factory=lambda: ApprovalPolicy(min_metrics={"rougeL": 0.2}, min_gain_over_base={"rougeL": 0.0})
    )
