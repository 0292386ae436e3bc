"""Recipe sections every use case shares: data source, registry, approval, endpoint, and the recipe base."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llm_finetune.generation import GenerationParams
from llm_finetune.serving.endpoint import DEFAULT_MAX_BODY_BYTES


class Strict(BaseModel):
    """A recipe section: unknown keys are errors, so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid")


DATA_URI_HELP = (
    "A local file or folder (JSON Lines, JSON array, CSV, TSV, Parquet, Arrow or text, optionally .gz/.bz2/.xz/.zst; "
    "a save_to_disk folder), s3://bucket/key, s3://bucket/prefix/, or hf://owner/name?split=train"
)


class DataSource(Strict):
    """Where the train and validation records live; read by the shared intake layer."""

    train_uri: str = Field(description=DATA_URI_HELP)
    validation_uri: str = Field(description="Same forms as train_uri; used for evaluation and endpoint tests")
    format: Literal["json", "csv", "tsv", "parquet", "arrow", "text"] | None = Field(
        None, description="File format; by default taken from the extension (.jsonl/.json, .csv, .parquet, ...)"
    )
    max_train_records: int | None = Field(None, gt=0, description="Use only the first N training records")
    max_validation_records: int | None = Field(None, gt=0)


class SageMakerModelPackageSpec(Strict):
    """A SageMaker Model Package Group mirroring the MLflow registry: one model package per registered version."""

    model_package_group: str = Field(description="Model Package Group name (created when missing)")
    s3_prefix: str = Field(description="s3://bucket/prefix: each trained model's model.tar.gz and metrics go here")
    image_uri: str = Field(
        description="Inference container image, e.g. the Hugging Face PyTorch inference DLC of the region"
    )
    inference_instance_types: list[str] = Field(
        default_factory=lambda: ["ml.g5.xlarge"], min_length=1, description="Instance types the package may serve on"
    )
    environment: dict[str, str] = Field(
        default_factory=dict, description="Container environment; HF_TASK is set from the model's served kind"
    )


class RegistrySpec(Strict):
    """MLflow tracking and model registry (the registry of record), optionally mirrored to SageMaker."""

    tracking_uri: str | None = Field(None, description="Default: sqlite:///<work_dir>/mlflow.db")
    experiment: str = Field(description="MLflow experiment the runs are logged to")
    model_name: str = Field(description="Registered model name; one version per distinct trained model")
    sagemaker: SageMakerModelPackageSpec | None = Field(
        None, description="Also register each version as a SageMaker model package (approval mirrored onto it)"
    )


class ApprovalPolicy(Strict):
    """Automatic approval when every threshold holds; otherwise the flow pauses for a person."""

    min_metrics: dict[str, float] = Field(description="Fine-tuned metric must be >= value")
    min_gain_over_base: dict[str, float] = Field(
        default_factory=dict, description="Fine-tuned minus base must be >= value"
    )
    alias: str = Field("champion", description="Registry alias set on the approved version")
    manual_timeout_s: int = Field(3600, gt=0, description="How long a paused run waits for a reviewer")


class SageMakerEndpointSpec(Strict):
    """A SageMaker real-time endpoint serving the version's approved model package."""

    endpoint_name: str | None = Field(
        None, description="Default: the registry's model_name; a new champion updates this endpoint in place"
    )
    role_arn: str = Field(description="IAM execution role of the SageMaker model")
    instance_type: str = "ml.g5.xlarge"
    initial_instance_count: int = Field(1, gt=0)
    variant_name: str = "AllTraffic"
    wait_timeout_s: float = Field(1800.0, gt=0, description="How long to wait for the endpoint to be InService")
    poll_interval_s: float = Field(30.0, gt=0)


class EndpointSpec(Strict):
    """Where the approved model is served: a local HTTP endpoint speaking the SageMaker inference protocol
    (/ping, /invocations), or a SageMaker endpoint; both are tested through the same client."""

    target: Literal["local", "sagemaker"] = Field("local", description="'sagemaker' needs endpoint.sagemaker")
    sagemaker: SageMakerEndpointSpec | None = None
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, description="0 picks a free port")
    startup_timeout_s: float = Field(180.0, gt=0)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0, description="Larger request bodies get HTTP 413")
    num_test_records: int = Field(5, gt=0)
    generation: GenerationParams = Field(
        default_factory=GenerationParams, description="Sent as the 'parameters' of each test request"
    )
    keep_running: bool = Field(False, description="Leave the endpoint up (SageMaker: not deleted) after the flow ends")

    @model_validator(mode="after")
    def _target_has_settings(self) -> "EndpointSpec":
        if self.target == "sagemaker" and self.sagemaker is None:
            raise ValueError("endpoint.target 'sagemaker' needs an endpoint.sagemaker section (role_arn, ...)")
        return self


class EvaluationParams(Strict):
    """Base vs fine-tuned on the validation split: generation settings, how many records, how many samples shown."""

    max_records: int = Field(50, gt=0)
    batch_size: int = Field(16, gt=0)
    generation: GenerationParams = Field(default_factory=GenerationParams)
    num_samples_shown: int = Field(3, ge=0, description="Sample outputs shown in artifacts and the approval form")


class RecipeBase(Strict):
    """What every use case's recipe has; each adds its typed `data`, `model`, `training` and `evaluation`."""

    name: str
    work_dir: str = Field(".llmft", description="Caches, checkpoints, MLflow store (relative to the working directory)")
    data: DataSource
    registry: RegistrySpec
    approval: ApprovalPolicy
    endpoint: EndpointSpec = Field(default_factory=EndpointSpec)

    @model_validator(mode="after")
    def _sagemaker_endpoint_has_package(self) -> "RecipeBase":
        if self.endpoint.target == "sagemaker" and self.registry.sagemaker is None:
            raise ValueError("endpoint.target 'sagemaker' deploys an approved model package: set registry.sagemaker")
        return self

    def tracking_uri(self) -> str:
        if self.registry.tracking_uri:
            return self.registry.tracking_uri
        return f"sqlite:///{Path(self.work_dir).resolve() / 'mlflow.db'}"

    def with_paths_relative_to(self, base: Path) -> "RecipeBase":
        """Local data paths in a recipe file are relative to that file, not to the working directory."""

        def resolve(uri: str) -> str:
            return uri if "://" in uri or Path(uri).is_absolute() else str((base / uri).resolve())

        data = self.data.model_copy(
            update={"train_uri": resolve(self.data.train_uri), "validation_uri": resolve(self.data.validation_uri)}
        )
        return self.model_copy(update={"data": data})
