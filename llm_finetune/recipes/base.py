"""Recipe sections every use case shares: data source, registry, approval, endpoint, SageMaker, and the recipe base."""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
from pathlib import Path
from typing import Annotated, ClassVar, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FieldSerializationInfo,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from llm_finetune.containers import DIALECTS, ContainerMismatch, SageMakerContainer, container_for_image
from llm_finetune.fingerprint import FINGERPRINT_CONTEXT
from llm_finetune.forms import in_declared_order
from llm_finetune.generation import GenerationParams
from llm_finetune.recipes.jumpstart import JumpStartSpec
from llm_finetune.recipes.paths import CwdPath, RecipePath

# Defaults the recipe sets and the code that uses them reads from here (the lower layer owns them).
DEFAULT_SUITE = Path(__file__).resolve().parent.parent / "probes" / "suites" / "instruction_following.yaml"
DEFAULT_MAX_BODY_BYTES = 1_000_000  # 1 MB: a batch of dialogues, far from a memory problem
DEFAULT_MAX_BATCH_SIZE = 64  # rows of the continuous scheduler too: 64 clients of endpoint_load.py run at once
DEFAULT_MAX_BATCH_WAIT_MS = 10.0  # the 16 clients of benchmarks/endpoint_load.py re-send within a few ms
Scheduler = Literal["continuous", "batches"]
SCHEDULERS: tuple[str, ...] = get_args(Scheduler)
DEFAULT_SCHEDULER: Scheduler = "continuous"
MODEL_PACKAGES_FOLDER = "model-packages"  # registry.sagemaker.s3_prefix's folder in an S3Bucket block's bucket
MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w.-]+))")
# Descriptions are markdown in the Prefect form, which drops a bare <word> as HTML: placeholders go in backticks.
TRACKING_URI_DEFAULT = ("Default: `$MLFLOW_TRACKING_URI`, else `sqlite:///<work_dir>/mlflow.db`; an http(s):// "
                        "server, or a SageMaker managed MLflow ARN "
                        "(`arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME`)")
# The ARNs the sagemaker-mlflow plugin resolves (its partitions and resource types); it reads the region from them.
SAGEMAKER_MLFLOW_ARN = re.compile(
    r"arn:aws(?:-us-gov)?:sagemaker:[a-z0-9-]+:\d{12}:(?:mlflow-tracking-server|mlflow-app)/[A-Za-z0-9._-]+")


def check_tracking_uri(uri: str | None) -> str | None:
    """A tracking URI as given; an `arn:` one must be a SageMaker managed MLflow ARN, with the sagemaker-mlflow plugin
    installed (it maps the ARN to the server's https URL and signs each request with the AWS credentials)."""
    if uri is None or not uri.startswith("arn:"):
        return uri
    if not SAGEMAKER_MLFLOW_ARN.fullmatch(uri):
        raise ValueError(f"{uri!r} is not a SageMaker managed MLflow ARN: expected "
                         f"arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME or ...:mlflow-app/ID")
    if importlib.util.find_spec("sagemaker_mlflow") is None:
        raise ValueError(f"{uri}: a SageMaker managed MLflow ARN needs the sagemaker-mlflow plugin "
                         f"(pip install sagemaker-mlflow; the sagemaker SDK installs it)")
    return uri


TrackingUri = Annotated[str | None, AfterValidator(check_tracking_uri)]


class Strict(BaseModel):
    """A recipe section: unknown keys are errors, so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=in_declared_order)


def require_exactly_one(section: BaseModel, names: tuple[str, ...]) -> None:
    """Raise unless exactly one of these fields is set (a model given by Hub id or by a tiny config, ...)."""
    given = [n for n in names if getattr(section, n) is not None]
    if len(given) != 1:
        raise ValueError(f"set exactly one of {', '.join(map(repr, names))} (got {', '.join(given) or 'none'})")


DATA_URI_HELP = (
    "A local file or folder (JSON Lines, JSON array, CSV, TSV, Parquet, Arrow or text, optionally .gz/.bz2/.xz/.zst; "
    "a save_to_disk folder), s3://bucket/key, s3://bucket/prefix/, or hf://owner/name?split=train"
)


class DataSource(Strict):
    """Where the train and validation records live; read by the shared intake layer."""

    train_uri: RecipePath = Field(description=DATA_URI_HELP)
    validation_uri: RecipePath = Field(description="Same forms as train_uri; used for evaluation and endpoint tests")
    format: Literal["json", "csv", "tsv", "parquet", "arrow", "text"] | None = Field(
        None, description="File format; by default taken from the extension (.jsonl/.json, .csv, .parquet, ...)"
    )
    shape_module: ClassVar[str | None] = None  # the data module whose SHAPE holds this data type's record rules
    max_train_records: int | None = Field(None, gt=0, description="Use only the first N training records")
    max_validation_records: int | None = Field(None, gt=0)


class SageMakerModelPackageSpec(Strict):
    """A SageMaker Model Package Group mirroring the MLflow registry: one model package per registered version."""

    model_package_group: str = Field(description="Model Package Group name (created when missing)")
    s3_prefix: str | None = Field(
        None, pattern=r"^s3://[^/]+(/.*)?$", description="s3://bucket/prefix: each trained model's model.tar.gz and "
        f"metrics go here; unset: `s3://<bucket_name>/<bucket_folder>/{MODEL_PACKAGES_FOLDER}` of the S3Bucket block "
        "named in aws.s3_bucket_block")
    image_uri: str | None = Field(
        None, description="Inference container image; default: the Hugging Face PyTorch inference DLC from the "
        "sagemaker SDK's image URI tables for the region and the first of inference_instance_types")
    inference_instance_types: list[str] = Field(
        default_factory=lambda: ["ml.g5.xlarge"], min_length=1, description="Instance types the package may serve on"
    )
    environment: dict[str, str] = Field(
        default_factory=dict, description="Container environment; HF_TASK is set from the model's served kind"
    )


class RegistrySpec(Strict):
    """MLflow tracking and model registry (the registry of record), optionally mirrored to SageMaker."""

    tracking_uri: TrackingUri = Field(None, description=TRACKING_URI_DEFAULT)
    experiment: str = Field(description="MLflow experiment the runs are logged to")
    model_name: str = Field(description="Registered model name; one version per distinct trained model")
    sagemaker: SageMakerModelPackageSpec | None = Field(
        None, description="Also register each version as a SageMaker model package (approval mirrored onto it)"
    )


MetricDirection = Literal["higher", "lower"]


class ApprovalPolicy(Strict):
    """Automatic approval when every threshold holds; otherwise the flow pauses for a person."""

    min_metrics: dict[str, float] = Field(default_factory=dict, description="Fine-tuned metric must be >= value")
    min_gain_over_base: dict[str, float] = Field(
        default_factory=dict, description="Fine-tuned minus base must be >= value and > 0 at the lower end of its "
        "confidence interval (paired bootstrap over the evaluation records)"
    )
    min_relative_decrease: dict[str, float] = Field(
        default_factory=dict, description="Lower-is-better metrics (perplexity) that must fall below the base's by at "
        "least this share over the whole confidence interval: {perplexity_in_domain: 0.01} = at least 1% lower")
    max_relative_increase: dict[str, float] = Field(
        default_factory=dict, description="Lower-is-better metrics that may rise above the base's by at most this "
        "share over the whole confidence interval: {perplexity_out_of_domain: 0.05} = at most 5% higher")
    require_gain: bool = Field(
        True, description="Refuse a policy without min_gain_over_base or min_relative_decrease (false: only "
        "min_metrics gate, which a model that learned nothing can pass; for tests of the release plumbing)")
    confidence_level: float = Field(0.95, gt=0.5, lt=1.0, description="Level of the gain's confidence interval")
    bootstrap_samples: int = Field(2000, ge=200, le=100_000, description="Resamples of the evaluation records")
    alias: str = Field("champion", description="Registry alias set on the approved version")
    previous_alias: str | None = Field(
        None, description="Alias moved to the version `alias` pointed to before an approval (e.g. previous-champion), "
        "so a rollback is one alias move")
    manual_review: bool = Field(
        True, description="When a threshold fails: pause the run for a reviewer (true) or record the version as "
        "rejected with the reasons at once (false; for scheduled runs)")
    manual_timeout_s: int = Field(3600, gt=0, description="How long a paused run waits for a reviewer")

    def metric_problems(self, metrics: dict[str, MetricDirection], unpaired: frozenset[str] = frozenset(),
                        *, needs_gain: bool = True) -> list[str]:
        """What is wrong with the metric names the policy uses, given the evaluation's metrics (name -> which way
        is better) and those without per-record values (`unpaired`: no interval, so no gain threshold)."""
        known = ", ".join(sorted(metrics))
        problems = []
        for field, wanted in (("min_metrics", "higher"), ("min_gain_over_base", "higher"),
                              ("min_relative_decrease", "lower"), ("max_relative_increase", "lower")):
            for name in getattr(self, field):
                if name not in metrics:
                    hint = difflib.get_close_matches(name, list(metrics), n=1)
                    problems.append(f"approval.{field}: unknown metric '{name}'"
                                    + (f"; did you mean '{hint[0]}'?" if hint else f"; this flow measures {known}"))
                elif metrics[name] != wanted:
                    problems.append(f"approval.{field}: '{name}' is {metrics[name]}-is-better; "
                                    + ("use min_relative_decrease / max_relative_increase" if wanted == "higher"
                                       else "use min_metrics / min_gain_over_base"))
                elif field != "min_metrics" and name in unpaired:
                    problems.append(f"approval.{field}: '{name}' has no per-record values, so its change cannot be "
                                    "measured with its uncertainty")
        if needs_gain and self.require_gain and not (self.min_gain_over_base or self.min_relative_decrease):
            problems.append("approval: set min_gain_over_base or min_relative_decrease; without a gain threshold a "
                            "model that learned nothing passes (require_gain: false allows it)")
        return problems


class SageMakerEndpointSpec(Strict):
    """A SageMaker real-time endpoint serving the version's approved model package."""

    endpoint_name: str | None = Field(
        None, description="Default: the registry's model_name; a new champion updates this endpoint in place"
    )
    role_arn: str | None = Field(
        None, description="IAM execution role of the SageMaker model; default: sagemaker.role_arn (the jobs' role)")
    container: SageMakerContainer | None = Field(
        None, description="What serves the model, and so what requests and answers look like: hf-dlc (Hugging Face "
        "inference DLC), tgi, lmi (DJL LMI); default: read from the image (registry.sagemaker.image_uri, or "
        "sagemaker.jumpstart.inference_image_uri)")
    instance_type: str = "ml.g5.xlarge"
    initial_instance_count: int = Field(1, gt=0)
    variant_name: str = "AllTraffic"
    wait_timeout_s: float = Field(1800.0, gt=0, description="How long to wait for the endpoint to be InService")
    poll_interval_s: float = Field(30.0, gt=0)


class EndpointSpec(Strict):
    """Where the approved model is served: a local HTTP endpoint speaking the SageMaker inference protocol
    (/ping, /invocations), or a SageMaker endpoint; both are tested through the same client."""

    target: Literal["local", "sagemaker"] = Field("local", description="'sagemaker' serves on a SageMaker endpoint "
                                                  "(settings in endpoint.sagemaker; its defaults when absent)")
    sagemaker: SageMakerEndpointSpec | None = None
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, description="0 picks a free port")
    startup_timeout_s: float = Field(180.0, gt=0)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, gt=0, description="Larger request bodies get HTTP 413")
    max_batch_size: int = Field(DEFAULT_MAX_BATCH_SIZE, ge=1, description="Most prompts of concurrent requests "
                                "answered by one batched generate; 1 turns batching off")
    max_batch_wait_ms: float = Field(DEFAULT_MAX_BATCH_WAIT_MS, ge=0, description="How long a request waits for "
                                     "others with the same settings to share its batch")
    scheduler: Scheduler = Field(DEFAULT_SCHEDULER, description="'continuous': greedy text-generation requests join "
                                 "and leave a running batch between decode steps (up to max_batch_size rows); "
                                 "'batches': only the dynamic batches above")
    num_test_records: int = Field(5, gt=0)
    generation: GenerationParams = Field(
        default_factory=GenerationParams, description="Sent as the 'parameters' of each test request"
    )
    keep_running: bool = Field(False, description="Leave the endpoint up (SageMaker: not deleted) after the flow ends")

    @model_validator(mode="after")
    def _target_has_settings(self) -> "EndpointSpec":
        if self.target == "sagemaker" and self.sagemaker is None:
            self.sagemaker = SageMakerEndpointSpec()
        return self


class ChatSettings(Strict):
    """How chat models under test answer: greedy (temperature 0) or seeded sampling; prompts batched per model."""

    max_tokens: int = Field(256, ge=1, le=2048, description="Most new tokens per answer")
    temperature: float = Field(0.0, ge=0, le=2, description="0 = greedy; above 0 samples, seeded by 'seed'")
    seed: int = Field(0, description="Seeds sampling (and is sent to endpoints) so runs repeat")
    batch_size: int = Field(8, gt=0, description="Prompts per generate call (in-process models)")


ProbeVariant = Literal["zero_shot", "system_role", "few_shot", "format_reminder"]


class ProbeSuiteSpec(Strict):
    """Which instruction-following probes to ask (llm_finetune/probes) and how models answer them."""

    # A factory: a default in the form's schema would be this machine's path.
    suite: RecipePath = Field(default_factory=lambda: str(DEFAULT_SUITE), description="Probe suite file (YAML), "
                              "relative to the recipe file; default: the instruction-following suite of the package")
    variants: list[ProbeVariant] = Field(
        default_factory=lambda: list(get_args(ProbeVariant)), min_length=1,
        description="How each prompt is asked: alone, after a system message, after worked examples, with a "
        "reminder of the format")
    max_prompts: int | None = Field(None, gt=0, description="Use only the first N prompts of the suite")
    chat: ChatSettings = Field(default_factory=ChatSettings)


class ProbeGateSpec(ProbeSuiteSpec):
    """The probes as a release gate: the fine-tuned model is rejected when its pass rate falls below its base
    model's by more than `tolerance`; the checks it newly fails are the reason."""

    tolerance: float = Field(0.05, ge=0, le=1, description="Largest allowed drop in pass rate (base minus fine-tuned)")
    per_check_type: bool = Field(False, description="Also hold the tolerance for each check type on its own")


def default_tracking_uri(work_dir: str) -> str:
    """$MLFLOW_TRACKING_URI (a team's tracking server: scripts/team_up.sh), else a SQLite file under work_dir."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(work_dir).resolve() / 'mlflow.db'}"


class RunTracking(Strict):
    """MLflow tracking of a flow that evaluates without registering a model."""

    tracking_uri: TrackingUri = Field(None, description=TRACKING_URI_DEFAULT)
    experiment: str = Field(description="MLflow experiment the runs are logged to")

    def uri(self, work_dir: str) -> str:
        return self.tracking_uri or default_tracking_uri(work_dir)


class EvaluationParams(Strict):
    """Base vs fine-tuned on the validation split: generation settings, how many records, how many samples shown."""

    max_records: int = Field(50, gt=0)
    batch_size: int = Field(16, gt=0)
    generation: GenerationParams = Field(default_factory=GenerationParams)
    num_samples_shown: int = Field(3, ge=0, description="Sample outputs shown in artifacts and the approval form")


Backend = Literal["local", "sagemaker"]


Precision = Literal["auto", "fp32", "bf16"]
PRECISION_HELP = "auto: bf16 mixed precision where the hardware computes bf16 natively, else fp32"


class TrainingLoopParams(Strict):
    """What every Trainer-based training section shares (training.job.trainer_arguments reads it): where it runs,
    how long, the optimiser's settings, batches, checkpoint cadence and seed. Each section sets its own defaults."""

    backend: Backend = Field("local", description="Where training runs: local (a process, torchrun) or sagemaker "
                             "(a training job; settings in the recipe's `sagemaker` section)")
    nproc_per_node: int = Field(1, gt=0, description="Processes (torchrun) on this machine; >1 = data parallel")
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="-1: train for `epochs`; N >= 1: exactly N optimiser steps (epochs ignored)")
    learning_rate: float = Field(5e-5, gt=0)
    per_device_train_batch_size: int = Field(8, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    warmup: float = Field(0.0, ge=0, description="Warm-up: a fraction of all steps if < 1, else a step count")
    weight_decay: float = Field(0.0, ge=0)
    logging_steps: int = Field(10, gt=0)
    save_steps: int = Field(50, gt=0, description="Checkpoint every N steps; a killed run resumes from the last one")
    save_total_limit: int = Field(2, gt=0)
    precision: Precision = Field("auto", description=PRECISION_HELP)
    compile: bool = Field(
        False, description="torch.compile the model for training (TrainingArguments torch_compile): the same "
        "losses, a one-off compile of tens of seconds on a CPU; pays off only on long runs, measure it "
        "(benchmarks/sft_throughput.py)")
    seed: int = 42

    @field_validator("max_steps")
    @classmethod
    def _steps_or_epochs(cls, steps: int) -> int:
        if steps != -1 and steps < 1:  # the Trainer reads 0 as one step and any negative as epochs
            raise ValueError(f"max_steps is -1 (train for `epochs`) or a step count >= 1, not {steps}")
        return steps

    @field_serializer("epochs")
    def _epochs_if_they_count(self, epochs: float, info: FieldSerializationInfo) -> float | None:
        """In a fingerprint, epochs only where they set the run's length: with max_steps, runs differing in epochs
        alone are one run."""
        return None if self.max_steps >= 1 and info.context == FINGERPRINT_CONTEXT else epochs

    @model_serializer(mode="wrap")
    def _without_speed_settings(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> dict:
        """In a fingerprint, no `compile`: it changes the speed, not the trained weights (test_causal_lm checks the
        losses and adapters match), so a compiled and an eager run share one run folder and its checkpoints."""
        data = handler(self)
        if info.context == FINGERPRINT_CONTEXT:
            data.pop("compile", None)
        return data


class SageMakerCompute(Strict):
    """Instances and limits of a SageMaker job."""

    instance_type: str = Field(description="ml.* instance type")
    instance_count: int = Field(1, gt=0, description="Instances the job runs on")
    volume_size_gb: int = Field(100, gt=0, description="EBS volume per instance: data, model, checkpoints")
    max_runtime_s: int = Field(
        86400, gt=0, le=28 * 86400, description="The service stops the job after this much run time; also the "
        "hours of the cost estimate")
    image_uri: str | None = Field(
        None, description="Container image; default: from the sagemaker SDK's image URI tables for the region and "
        "instance type (GPU: the Hugging Face PyTorch training DLC; CPU: the PyTorch training CPU image)")
    max_cost_usd: float | None = Field(
        None, gt=0, description="Refuse to launch when the estimate (instances x max_runtime_s hours x on-demand "
        "price) exceeds this")
    usd_per_hour: float | None = Field(
        None, gt=0, description="On-demand price per instance-hour for the estimate; default from the table in "
        "llm_finetune/backends/sagemaker_prices.csv")


class SageMakerTraining(SageMakerCompute):
    """A training job: instances, limits, managed spot."""

    instance_type: str = Field("ml.g5.2xlarge", description="ml.* instance type (ml.g5.2xlarge: 1 A10G GPU)")
    instance_count: int = Field(
        1, gt=0, description="Instances; with more than one process in all (instances x GPUs) the entry point runs "
        "torchrun (data parallel: the global batch grows with them)")
    spot: bool = Field(False, description="Managed spot training: cheaper, may be interrupted; an interrupted job "
                       "resumes from its checkpoints in S3")
    max_wait_s: int | None = Field(
        None, gt=0, description="Spot only: run time plus time waiting for capacity, >= max_runtime_s; "
        "default 2 x max_runtime_s")

    @model_validator(mode="after")
    def _wait_covers_runtime(self) -> "SageMakerTraining":
        if self.max_wait_s is not None and not self.spot:
            raise ValueError("max_wait_s applies to spot jobs only; set spot: true or remove max_wait_s")
        if self.max_wait_s is not None and self.max_wait_s < self.max_runtime_s:
            raise ValueError(f"max_wait_s ({self.max_wait_s}) must be >= max_runtime_s ({self.max_runtime_s})")
        return self


class SageMakerProcessing(SageMakerCompute):
    """A processing job (data preparation): instances and limits. SageMaker Processing has no managed spot."""

    instance_type: str = Field("ml.m5.xlarge", description="ml.* instance type (ml.m5.xlarge: 4 vCPU, 16 GiB)")
    instance_count: int = Field(1, ge=1, le=1, description="The preparation step runs on one instance")
    volume_size_gb: int = Field(30, gt=0, description="EBS volume per instance")
    max_runtime_s: int = Field(3600, gt=0, le=7 * 86400, description="The service stops the job after this much run "
                               "time; also the hours of the cost estimate")


class SageMakerSpec(Strict):
    """Account, storage and compute for steps whose backend is `sagemaker` (training, data preparation)."""

    region: str = Field("us-east-1", description="AWS region of the jobs and the bucket")
    role_arn: str = Field(description="IAM execution role the jobs run as (needs S3 access to the bucket)")
    bucket: str | None = Field(None, description="S3 bucket for inputs, code, checkpoints and model artifacts; "
                               "unset: the bucket of the S3Bucket block named in aws.s3_bucket_block")
    prefix: str = Field("llm-finetune-flows", description="Key prefix in the bucket")
    endpoint_url: str | None = Field(
        None, description="SageMaker and S3 API endpoint other than AWS's (a VPC endpoint, LocalStack, a moto server: "
        "scripts/moto_server.sh); talked to as the SageMaker API unless stand_in is set")
    stand_in: bool = Field(
        False, description="The API at endpoint_url is a local stand-in (moto) that records jobs without running them: "
        "run each job's container on this machine under the SageMaker container contract")
    checkpoint_s3_uri: str | None = Field(
        None, description="Base S3 URI of training checkpoints; each job's are under `<uri>/<training fingerprint>/` "
        "so a relaunched (spot-interrupted, failed) job resumes. Default `s3://<bucket>/<prefix>/checkpoints`")
    training: SageMakerTraining = Field(default_factory=SageMakerTraining)
    processing: SageMakerProcessing = Field(default_factory=SageMakerProcessing)
    poll_initial_s: float = Field(10.0, gt=0, description="First wait between job status polls")
    poll_max_s: float = Field(60.0, gt=0, description="Polls back off (x1.5 each) up to this")
    jumpstart: JumpStartSpec | None = Field(
        None, description="A JumpStart model (resolved fields written out). When set, `training.backend: sagemaker` "
        "runs a JumpStart fine-tune (JumpStart's image, training script and base weights, the recipe's data and "
        "hyperparameters) instead of this project's trainer, and `endpoint.target: sagemaker` serves the fine-tuned "
        "model with JumpStart's inference image")

    @model_validator(mode="after")
    def _stand_in_has_endpoint(self) -> "SageMakerSpec":
        if self.stand_in and not self.endpoint_url:
            raise ValueError("stand_in runs jobs against a local API stand-in: set endpoint_url to it (e.g. "
                             "http://127.0.0.1:5000, scripts/moto_server.sh) or set stand_in: false")
        return self


class AwsSpec(Strict):
    """Which AWS identity and bucket a run uses, named as Prefect blocks (prefect-aws) on the run's Prefect server.
    Unset: boto3's default credential chain (environment, AWS_PROFILE, instance or task role)."""

    credentials_block: str | None = Field(
        None, description="Name of an AwsCredentials block: every AWS client of the run (S3 data, SageMaker jobs, "
        "model packages, endpoints, pipelines) and MLflow (the requests to a SageMaker managed MLflow ARN, s3:// "
        "artifacts) use its keys, profile or assumed role; its region and aws_client_parameters.endpoint_url apply "
        "where the recipe names none")
    s3_bucket_block: str | None = Field(
        None, description="Name of an S3Bucket block: its bucket_name is the SageMaker bucket (sagemaker.bucket may "
        "be left out; if given, it must be the same) and its bucket_folder goes before sagemaker.prefix; "
        f"registry.sagemaker.s3_prefix defaults to `s3://<bucket_name>/<bucket_folder>/{MODEL_PACKAGES_FOLDER}`; its "
        "credentials are used when credentials_block is unset")


# The `aws` section of every recipe whose flow reaches AWS (S3 data, SageMaker, endpoints, a managed MLflow ARN).
AwsSection = Annotated[AwsSpec, Field(default_factory=AwsSpec, description="AWS credentials and bucket from named "
                                      "Prefect blocks; by default boto3's credential chain")]


class RecipeBase(Strict):
    """What every use case's recipe has; each adds its typed `data`, `model`, `training` and `evaluation`."""

    name: str
    work_dir: CwdPath = Field(".llmft", description="Caches, checkpoints, MLflow store (relative to the working "
                              "directory)")
    data: DataSource
    registry: RegistrySpec
    approval: ApprovalPolicy
    endpoint: EndpointSpec = Field(default_factory=EndpointSpec)
    probe_gate: ProbeGateSpec | None = Field(
        None, description="Off by default. Set it to reject a fine-tuned model whose instruction-following pass rate "
        "falls below its base model's by more than a tolerance")
    sagemaker: SageMakerSpec | None = Field(
        None, description="Needed when a step's backend is 'sagemaker' (training.backend, data.preparation_backend)")
    aws: AwsSection

    # The evaluation's metrics the approval policy may name (-> which way is better); those without per-record
    # values; whether the release gate must measure a gain (False where no base model is compared).
    METRICS: ClassVar[dict[str, MetricDirection]] = {}
    UNPAIRED_METRICS: ClassVar[frozenset[str]] = frozenset()
    GATES_ON_GAIN: ClassVar[bool] = True

    def metric_directions(self) -> dict[str, MetricDirection]:
        return dict(self.METRICS)

    @model_validator(mode="after")
    def _approval_names_measured_metrics(self) -> "RecipeBase":
        metrics = self.metric_directions()
        if metrics and (problems := self.approval.metric_problems(metrics, self.UNPAIRED_METRICS,
                                                                  needs_gain=self.GATES_ON_GAIN)):
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _sagemaker_endpoint_has_package(self) -> "RecipeBase":
        if self.endpoint.target == "sagemaker" and self.registry.sagemaker is None:
            raise ValueError("endpoint.target 'sagemaker' deploys an approved model package: set registry.sagemaker")
        return self

    @model_validator(mode="after")
    def _sagemaker_settings_present(self) -> "RecipeBase":
        if self.sagemaker is None and (uses := self.sagemaker_steps()):
            raise ValueError(f"{', '.join(uses)} is 'sagemaker' but the recipe has no 'sagemaker' section "
                             "(role_arn, bucket, ...)")
        return self

    @model_validator(mode="after")
    def _sagemaker_has_bucket(self) -> RecipeBase:
        if self.sagemaker is not None and self.sagemaker.bucket is None and self.aws.s3_bucket_block is None:
            raise ValueError("sagemaker.bucket: set the S3 bucket, or name an S3Bucket block in aws.s3_bucket_block")
        return self

    @model_validator(mode="after")
    def _model_packages_have_a_prefix(self) -> RecipeBase:
        package = self.registry.sagemaker
        if package is not None and package.s3_prefix is None and self.aws.s3_bucket_block is None:
            raise ValueError("registry.sagemaker.s3_prefix: set s3://bucket/prefix for the model packages' files, or "
                             "name an S3Bucket block in aws.s3_bucket_block")
        return self

    @model_validator(mode="after")
    def _endpoint_role_defaults_to_jobs_role(self) -> "RecipeBase":
        endpoint = self.endpoint.sagemaker
        if self.endpoint.target == "sagemaker" and endpoint is not None and endpoint.role_arn is None:
            if self.sagemaker is None:
                raise ValueError("endpoint.target 'sagemaker' needs an execution role: set endpoint.sagemaker.role_arn "
                                 "or sagemaker.role_arn (used for both when only it is set)")
            endpoint.role_arn = self.sagemaker.role_arn
        return self

    @model_validator(mode="after")
    def _endpoint_generation_fits_the_container(self) -> "RecipeBase":
        # Checked now, not after training; an image no container is known for is refused at deploy instead.
        if self.endpoint.target != "sagemaker" or self.registry.sagemaker is None:
            return self
        try:
            container = self.endpoint_container()
        except ContainerMismatch:
            return self
        if problems := DIALECTS[container].problems(self.endpoint.generation):
            raise ValueError("; ".join(problems))
        return self

    def endpoint_container(self) -> SageMakerContainer:
        """What serves the SageMaker endpoint: endpoint.sagemaker.container, else read from the image deployed."""
        if self.endpoint.sagemaker is not None and self.endpoint.sagemaker.container is not None:
            return self.endpoint.sagemaker.container
        jumpstart = self.sagemaker.jumpstart if self.sagemaker is not None else None
        if jumpstart is not None:
            return container_for_image(jumpstart.inference_image_uri)
        if self.registry.sagemaker.image_uri is None:
            return "hf-dlc"  # llm_finetune.backends.images.package_image: the HF PyTorch inference DLC
        return container_for_image(self.registry.sagemaker.image_uri)

    @model_validator(mode="after")
    def _jumpstart_is_used(self) -> "RecipeBase":
        jumpstart = self.sagemaker.jumpstart if self.sagemaker is not None else None
        if jumpstart is None:
            return self
        training = any(step.endswith("training.backend") for step in self.sagemaker_steps())
        problems = []
        if not training and self.endpoint.target != "sagemaker":
            problems.append("sagemaker.jumpstart is set but nothing uses it: set training.backend: sagemaker "
                            "(a JumpStart fine-tune) and/or endpoint.target: sagemaker (JumpStart's inference image)")
        if jumpstart.requires_eula and not jumpstart.accept_eula:
            problems.append(f"sagemaker.jumpstart.accept_eula: JumpStart model '{jumpstart.model_id}' is gated behind "
                            "a EULA; read it and set accept_eula: true")
        if training and (missing := jumpstart.training_problems()):
            problems.append(f"training.backend 'sagemaker' with sagemaker.jumpstart fine-tunes with JumpStart's "
                            f"training image, script and weights: set {', '.join(missing)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def sagemaker_steps(self) -> list[str]:
        """The recipe fields that send a step to SageMaker."""
        fields = {"training.backend": getattr(getattr(self, "training", None), "backend", "local"),
                  "data.preparation_backend": getattr(self.data, "preparation_backend", "local")}
        return [name for name, backend in fields.items() if backend == "sagemaker"]

    def tracking_uri(self) -> str:
        return self.registry.tracking_uri or default_tracking_uri(self.work_dir)
