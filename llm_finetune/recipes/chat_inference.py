"""The chatbot inference recipe: which endpoint answers, which prompt suites it gets, under which generation settings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, ValidationError, field_validator, model_validator

from llm_finetune.generation import GenerationParams
from llm_finetune.recipes.base import (
    DATA_URI_HELP,
    TRACKING_URI_DEFAULT,
    AwsSection,
    EndpointSpec,
    Strict,
    TrackingUri,
    default_tracking_uri,
)
from llm_finetune.recipes.paths import CwdPath, RecipePath

SuiteKind = Literal["chat", "assistant", "cot"]
Route = Literal["chat", "inputs"]
CotStyle = Literal["direct", "zero_shot_cot", "few_shot_cot"]
COT_STYLES: tuple[CotStyle, ...] = ("direct", "zero_shot_cot", "few_shot_cot")
SuiteName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$")]  # names artifacts: lowercase, dashes


class RegisteredModelRef(Strict):
    """A registered MLflow model version, served locally for the run (it must be approved)."""

    name: str = Field(description="Registered model name, e.g. dolly-llama2-tiny")
    version: str | None = Field(None, description="Version number; or give alias")
    alias: str | None = Field(None, description="Alias such as champion; or give version")
    tracking_uri: TrackingUri = Field(None, description=TRACKING_URI_DEFAULT)

    @model_validator(mode="after")
    def _version_or_alias(self) -> RegisteredModelRef:
        if (self.version is None) == (self.alias is None):
            raise ValueError("set exactly one of 'version' or 'alias'")
        return self


class InferenceTarget(Strict):
    """The endpoint under test: exactly one of an HTTP URL, a SageMaker endpoint name, or a registered version that
    the flow serves locally for the run."""

    url: str | None = Field(None, description="Base URL of an HTTP endpoint (POST /invocations, /v1/chat/completions)")
    sagemaker_endpoint: str | None = Field(None, description="SageMaker endpoint name (InvokeEndpoint)")
    registered_model: RegisteredModelRef | None = None
    token_env: str | None = Field(
        None, description="Name of the environment variable holding a bearer token for the URL (sent as "
        "'Authorization: Bearer ...'); the token itself never goes in a recipe")
    region: str | None = Field(None, description="SageMaker: AWS region (default: AWS_REGION / AWS_DEFAULT_REGION)")
    aws_endpoint_url: str | None = Field(None, description="SageMaker: another runtime API URL (a VPC endpoint, moto)")
    timeout_s: float = Field(120.0, gt=0, description="Longest wait for one answer")
    tokenizer: CwdPath | None = Field(
        None, description="Hub id or local folder of the served model's tokenizer, to count generated tokens when "
        "the endpoint does not report them (a registered version uses its own); without either, tokens/s is empty")
    local: EndpointSpec = Field(
        default_factory=EndpointSpec, description="registered_model only: how the local endpoint runs (host, port, "
        "startup_timeout_s, max_body_bytes, keep_running); its test settings are not used here")

    @model_validator(mode="after")
    def _exactly_one(self) -> InferenceTarget:
        given = [k for k in ("url", "sagemaker_endpoint", "registered_model") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("set exactly one of 'url', 'sagemaker_endpoint' or 'registered_model'"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.token_env and self.sagemaker_endpoint:
            raise ValueError("token_env applies to HTTP endpoints; SageMaker requests are signed with AWS credentials")
        return self


class PromptSuiteSpec(Strict):
    """One prompt suite file and how its records are asked."""

    path: RecipePath = Field(description=DATA_URI_HELP)
    kind: SuiteKind = Field(description="chat: single turns; assistant: multi-turn with a system prompt; "
                                        "cot: arithmetic word problems with known numeric answers")
    route: Route = Field("chat", description="chat: chat messages (the endpoint applies its chat template); "
                                             "inputs: plain prompt text (cot only, for models without a chat template)")
    max_records: int | None = Field(None, gt=0, description="Ask only the first N records (cot: N test problems)")
    styles: list[CotStyle] = Field(
        list(COT_STYLES), min_length=1, description="cot only: direct answer, zero-shot 'think step by step', "
        "few-shot worked examples (the suite's records with use: example)")
    few_shot: int = Field(3, ge=1, description="cot only: worked examples put before each few-shot question")

    @model_validator(mode="after")
    def _route_fits_kind(self) -> PromptSuiteSpec:
        if self.kind != "cot" and self.route != "chat":
            raise ValueError(f"a {self.kind} suite holds chat messages: set route: chat")
        return self


class DecodingSetting(Strict):
    """One decoding strategy of the grid; unset (null) settings are left to the endpoint's defaults."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Shown in the comparison table")
    do_sample: bool = Field(False, description="Sample; false = greedy (num_beams 1) or beam search")
    num_beams: int = Field(1, description="1 is greedy search")
    temperature: float | None = Field(None, description="Sampling only")
    top_p: float | None = Field(None, description="Sampling only")
    top_k: int | None = Field(None, description="Sampling only")
    seed: int | None = Field(None, description="Sampling needs one, so runs compare")
    repetition_penalty: float | None = Field(None, description="Above 1 discourages repeats; null: the endpoint's")

    @model_validator(mode="after")
    def _consistent(self) -> DecodingSetting:
        problems = []
        try:  # the bounds of every generation setting have one home
            GenerationParams.model_validate(self.model_dump(exclude={"name"}, exclude_none=True))
        except ValidationError as e:
            problems += [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
        sampling_only = [k for k in ("temperature", "top_p", "top_k") if getattr(self, k) is not None]
        if sampling_only and not self.do_sample:
            problems.append(f"{', '.join(sampling_only)}: set do_sample: true (sampling settings)")
        if self.do_sample and self.seed is None:
            problems.append("sampling needs a fixed seed, so settings compare run to run")
        if self.do_sample and self.num_beams > 1:
            problems.append("choose sampling or beam search (num_beams > 1), not both")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def default_decoding() -> list[DecodingSetting]:
    return [
        DecodingSetting(name="greedy"),
        DecodingSetting(name="beam4", num_beams=4),
        DecodingSetting(name="sample-t0.7", do_sample=True, temperature=0.7, top_p=0.95, seed=1),
        DecodingSetting(name="sample-t1.2", do_sample=True, temperature=1.2, top_p=0.95, seed=1),
    ]


class GenerationGrid(Strict):
    """Every suite runs under each decoding setting x each length limit."""

    decoding: list[DecodingSetting] = Field(default_factory=default_decoding, min_length=1)
    max_new_tokens: list[int] = Field([64, 256], min_length=1, description="Length limits (max_tokens in chat)")
    stop: list[str] = Field(default_factory=list, description="Text is cut at the first of these strings")

    @field_validator("max_new_tokens")
    @classmethod
    def _lengths(cls, v: list[int]) -> list[int]:
        for n in v:
            try:
                GenerationParams(max_new_tokens=n)
            except ValidationError as e:
                raise ValueError(f"{n}: {e.errors()[0]['msg']}") from None
        return v

    @model_validator(mode="after")
    def _unique(self) -> GenerationGrid:
        names = [d.name for d in self.decoding]
        if len(set(names)) != len(names) or len(set(self.max_new_tokens)) != len(self.max_new_tokens):
            raise ValueError("decoding names and max_new_tokens must be unique")
        return self


class TrackingSpec(Strict):
    """Also log the run to MLflow: the recipe as params, each row's figures as metrics, outputs and tables."""

    tracking_uri: TrackingUri = Field(None, description=TRACKING_URI_DEFAULT)
    experiment: str = "chatbot-inference"


class ChatInferenceRecipe(Strict):
    """Prompt suites through an endpoint across a grid of generation settings, compared in one table per suite."""

    name: str = "chatbot-inference"
    work_dir: CwdPath = Field(".llmft", description="Outputs, caches, MLflow store (relative to the working "
                              "directory)")
    endpoint: InferenceTarget
    suites: dict[SuiteName, PromptSuiteSpec] = Field(
        min_length=1, description="Suites by name (lowercase, dashes; names the artifacts), run in this order")
    grid: GenerationGrid = Field(default_factory=GenerationGrid)
    tracking: TrackingSpec | None = Field(default_factory=TrackingSpec, description="null: Prefect artifacts only")
    aws: AwsSection

    def default_tracking_uri(self) -> str:
        return default_tracking_uri(self.work_dir)

    def registered_model_tracking_uri(self) -> str | None:
        """The MLflow registry of the registered model served (None when the endpoint is not one)."""
        ref = self.endpoint.registered_model
        return (ref.tracking_uri or self.default_tracking_uri()) if ref else None

    def run_log_tracking_uri(self) -> str | None:
        """Where the run is logged (None without tracking)."""
        return (self.tracking.tracking_uri or self.default_tracking_uri()) if self.tracking else None

    def tracking_uris(self) -> list[str]:
        """The MLflow tracking URIs the run talks to: its registered model's and its own run log's."""
        return [uri for uri in (self.registered_model_tracking_uri(), self.run_log_tracking_uri()) if uri]
