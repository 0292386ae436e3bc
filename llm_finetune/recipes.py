"""Typed recipes: what model, what data, which hyperparameters. Loadable from YAML; Prefect renders them as forms."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llm_finetune.errors import RecipeError
from llm_finetune.generation import GenerationParams
from llm_finetune.serving.endpoint import DEFAULT_MAX_BODY_BYTES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SummarizationData(_Strict):
    """Where the dialogue/summary records live and how they become model inputs."""

    train_uri: str = Field(description="Local JSONL path, s3://bucket/key.jsonl, or hf://owner/name?split=train")
    validation_uri: str = Field(description="Same forms as train_uri; used for evaluation and endpoint tests")
    dialogue_field: str = "dialogue"
    summary_field: str = "summary"
    id_field: str | None = Field("fname", description="Record id field, if the data has one")
    prompt_template: str = "Summarize the following conversation.\n\n{dialogue}\n\nSummary: "
    max_source_tokens: int = Field(512, gt=0)
    max_target_tokens: int = Field(128, gt=0)
    max_train_records: int | None = Field(None, gt=0, description="Use only the first N training records")
    max_validation_records: int | None = Field(None, gt=0)

    @field_validator("prompt_template")
    @classmethod
    def _has_dialogue_slot(cls, v: str) -> str:
        if "{dialogue}" not in v:
            raise ValueError("prompt_template must contain '{dialogue}'")
        return v


class TinyT5Spec(_Strict):
    """A randomly initialised T5 built from a config, with a tokenizer trained on the training split (works offline)."""

    vocab_size: int = Field(2000, ge=100)
    d_model: int = 64
    d_ff: int = 128
    d_kv: int = 16
    num_heads: int = 4
    num_layers: int = 2
    num_decoder_layers: int = 2
    seed: int = 0


class ModelSpec(_Strict):
    """Base model: a Hub id or local directory (e.g. google/flan-t5-base), or a tiny offline T5."""

    name_or_path: str | None = None
    tiny: TinyT5Spec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "ModelSpec":
        if (self.name_or_path is None) == (self.tiny is None):
            raise ValueError("set exactly one of 'name_or_path' or 'tiny'")
        return self


class Seq2SeqTrainingParams(_Strict):
    """Hyperparameters passed to transformers' Seq2SeqTrainer."""

    backend: Literal["local"] = "local"
    num_train_epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, description="If > 0, overrides num_train_epochs")
    learning_rate: float = Field(5e-4, gt=0)
    per_device_train_batch_size: int = Field(8, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    logging_steps: int = Field(10, gt=0)
    save_steps: int = Field(50, gt=0, description="Checkpoint every N steps; a killed run resumes from the last one")
    save_total_limit: int = Field(2, gt=0)
    group_by_length: bool = Field(True, description="Batch records of similar length to cut padding")
    seed: int = 42


class EvaluationParams(_Strict):
    """ROUGE evaluation of the base and fine-tuned models on the validation split."""

    max_records: int = Field(50, gt=0)
    batch_size: int = Field(16, gt=0)
    generation: GenerationParams = Field(default_factory=GenerationParams)
    num_samples_shown: int = Field(3, ge=0, description="Sample summaries shown in artifacts and the approval form")


class RegistrySpec(_Strict):
    """MLflow tracking and model registry."""

    tracking_uri: str | None = Field(None, description="Default: sqlite:///<work_dir>/mlflow.db")
    experiment: str = "dialogsum-flan-t5"
    model_name: str = "dialogsum-flan-t5"


class ApprovalPolicy(_Strict):
    """Automatic approval when every threshold holds; otherwise the flow pauses for a person."""

    min_metrics: dict[str, float] = Field(
        default_factory=lambda: {"rougeL": 0.2}, description="Fine-tuned metric must be >= value"
    )
    min_gain_over_base: dict[str, float] = Field(
        default_factory=lambda: {"rougeL": 0.0}, description="Fine-tuned minus base must be >= value"
    )
    alias: str = Field("champion", description="Registry alias set on the approved version")
    manual_timeout_s: int = Field(3600, gt=0, description="How long a paused run waits for a reviewer")


class EndpointSpec(_Strict):
    """Local HTTP endpoint speaking the SageMaker inference protocol (/ping, /invocations)."""

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, description="0 picks a free port")
    startup_timeout_s: float = Field(180.0, gt=0)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0, description="Larger request bodies get HTTP 413")
    num_test_records: int = Field(5, gt=0)
    generation: GenerationParams = Field(
        default_factory=GenerationParams, description="Sent as the 'parameters' of each test request"
    )
    keep_running: bool = Field(False, description="Leave the endpoint up after the flow ends")


class SummarizationRecipe(_Strict):
    """Everything one dialogue-summarization run needs."""

    name: str = "dialogsum-flan-t5"
    work_dir: str = Field(".llmft", description="Caches, checkpoints, MLflow store (relative to the working directory)")
    data: SummarizationData
    model: ModelSpec
    training: Seq2SeqTrainingParams = Field(default_factory=Seq2SeqTrainingParams)
    evaluation: EvaluationParams = Field(default_factory=EvaluationParams)
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    endpoint: EndpointSpec = Field(default_factory=EndpointSpec)

    def tracking_uri(self) -> str:
        if self.registry.tracking_uri:
            return self.registry.tracking_uri
        return f"sqlite:///{Path(self.work_dir).resolve() / 'mlflow.db'}"

    def with_paths_relative_to(self, base: Path) -> "SummarizationRecipe":
        """Local data paths in a recipe file are relative to that file, not to the working directory."""

        def resolve(uri: str) -> str:
            return uri if "://" in uri or Path(uri).is_absolute() else str((base / uri).resolve())

        data = self.data.model_copy(
            update={"train_uri": resolve(self.data.train_uri), "validation_uri": resolve(self.data.validation_uri)}
        )
        return self.model_copy(update={"data": data})


def load_recipe(path: str | Path, recipe_type: type[BaseModel] = SummarizationRecipe) -> BaseModel:
    """Read a YAML recipe; errors name the file and the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping, got {type(raw).__name__}")
    try:
        recipe = recipe_type.model_validate(raw)
    except ValidationError as e:
        lines = [f"  - field '{'.'.join(str(p) for p in err['loc']) or '<root>'}': {err['msg']}" for err in e.errors()]
        raise RecipeError(f"{path}: invalid recipe:\n" + "\n".join(lines)) from None
    if hasattr(recipe, "with_paths_relative_to"):
        recipe = recipe.with_paths_relative_to(path.resolve().parent)
    return recipe
