"""The instruction-following probe recipe: a probe suite asked of several chat models (registered versions, Hub ids,
local folders, tiny offline models, HTTP or SageMaker endpoints), pass rates per check type x variant x model."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from llm_finetune.recipes.base import MODEL_URI, AwsSection, ProbeSuiteSpec, RunTracking, Strict, require_exactly_one
from llm_finetune.recipes.instruction import TinyCausalSpec
from llm_finetune.recipes.paths import CwdPath, RecipeModel

MODEL_SOURCES = ("name_or_path", "registered", "endpoint_url", "sagemaker_endpoint", "tiny")


class ProbeModelSpec(Strict):
    """One model under test; set exactly one source."""

    name: str = Field(pattern=r"^[\w.-]+$", description="Label in tables and charts (letters, digits, . _ -)")
    name_or_path: RecipeModel | None = Field(
        None, description="Hub id (mistralai/Mistral-7B-Instruct-v0.3) or local folder")
    registered: str | None = Field(
        None, description="A registered MLflow version, models:/NAME/VERSION, or an alias, models:/NAME@ALIAS")
    endpoint_url: str | None = Field(
        None, description="Base URL of an HTTP endpoint that answers POST /v1/chat/completions")
    sagemaker_endpoint: str | None = Field(
        None, description="SageMaker endpoint name; the same chat request goes through InvokeEndpoint")
    tiny: TinyCausalSpec | None = Field(
        None, description="A tiny random model built offline (tokenizer trained on the suite): a stand-in only")
    token_env: str | None = Field(
        None, description="HTTP endpoints: environment variable holding a bearer token sent as Authorization")

    @model_validator(mode="after")
    def _exactly_one(self) -> ProbeModelSpec:
        require_exactly_one(self, MODEL_SOURCES)
        return self

    @field_validator("registered")
    @classmethod
    def _registered_uri(cls, v: str | None) -> str | None:
        if v is not None and not MODEL_URI.fullmatch(v):
            raise ValueError("must be models:/NAME/VERSION or models:/NAME@ALIAS")
        return v


class InstructionProbeRecipe(Strict):
    """Everything one probe run needs."""

    name: str = "instruction-following-probe"
    work_dir: CwdPath = Field(".llmft", description="Caches, answers, MLflow store (relative to the working "
                              "directory)")
    probes: ProbeSuiteSpec = Field(default_factory=ProbeSuiteSpec)
    models: list[ProbeModelSpec] = Field(min_length=1)
    tracking: RunTracking = Field(default_factory=lambda: RunTracking(experiment="instruction-following-probe"))
    aws: AwsSection

    @field_validator("models")
    @classmethod
    def _unique_names(cls, v: list[ProbeModelSpec]) -> list[ProbeModelSpec]:
        names = [m.name for m in v]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        return v

    def tracking_uri(self) -> str:
        return self.tracking.uri(self.work_dir)
