"""Context + question -> answer recipes (SQuAD): generative (a causal LM learns the answer as a completion, through
the SFT trainer) or extractive (an encoder with a span head, sliding windows over long contexts)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from llm_finetune.recipes.base import ApprovalPolicy, DataSource, RecipeBase, RegistrySpec, Strict
from llm_finetune.recipes.classification import ClassifierModelSpec, TrainerParams
from llm_finetune.recipes.instruction import CausalModelSpec, LoraSpec, SFTParams


class QAData(DataSource):
    """SQuAD-layout records (Hugging Face `squad` schema): id, context, question, answers {text: [..],
    answer_start: [..]}. Every answer_start must point at its answer text in the context."""

    shape_module: ClassVar[str] = "llm_finetune.data.qa"  # its record rules: a DataShape named SHAPE

    id_field: str = "id"
    context_field: str = "context"
    question_field: str = "question"
    answers_field: str = "answers"
    max_length: int = Field(384, gt=16, description="Tokens per training sequence (prompt and answer, or the "
                            "encoder's question + context window)")
    prompt_template: str = Field(
        "Context: {context}\nQuestion: {question}\nAnswer:",
        description="Generative only. Ends without a space: the completion starts with ' answer', so the prompt's "
        "tokens are a prefix of prompt + completion")
    overlong_records: Literal["fail", "drop"] = Field(
        "fail", description="Generative: a record whose question alone leaves no room for context and answer: "
        "'fail' names it, 'drop' skips it")

    @field_validator("prompt_template")
    @classmethod
    def _has_slots(cls, v: str) -> str:
        missing = [s for s in ("{context}", "{question}") if s not in v]
        if missing:
            raise ValueError(f"prompt_template must contain {' and '.join(missing)}")
        return v

    # Field names the SFT data checks use in their messages (see llm_finetune.data.instructions).
    @property
    def response_field(self) -> str:
        return self.answers_field

    @property
    def instruction_field(self) -> str:
        return self.question_field


class GenerativeQA(Strict):
    """A causal LM (tiiuae/falcon-7b, or a tiny Falcon offline) answers after the prompt; loss on the answer only."""

    model: CausalModelSpec
    lora: LoraSpec = Field(default_factory=LoraSpec)
    training: SFTParams = Field(default_factory=SFTParams)

    @model_validator(mode="after")
    def _no_falcon_packing(self) -> GenerativeQA:
        falcon = (self.model.tiny is not None and self.model.tiny.family == "falcon") or \
            "falcon" in (self.model.name_or_path or "").lower()
        if falcon and self.training.packing:
            raise ValueError("training.packing: packed Falcon batches let records attend to each other on CPU "
                             "(Falcon ignores position-bounded attention); set packing: false")
        return self


class ExtractiveQA(Strict):
    """An encoder with a span head (AutoModelForQuestionAnswering), as the Hugging Face run_qa example trains it."""

    model: ClassifierModelSpec
    training: TrainerParams = Field(default_factory=lambda: TrainerParams(learning_rate=1e-4, epochs=2))
    doc_stride: int = Field(128, gt=0, description="Tokens shared by two neighbouring windows of a long context")
    n_best_size: int = Field(20, gt=0, description="Start/end candidates considered per window")
    max_answer_length: int = Field(30, gt=0, description="Longest answer in tokens")


class QAEvaluationParams(Strict):
    """Base vs fine-tuned on the validation split: SQuAD exact match and F1 (0-100)."""

    max_records: int | None = Field(None, gt=0, description="Score only the first N validation records (default all)")
    batch_size: int = Field(16, gt=0)
    max_new_tokens: int = Field(24, gt=0, description="Generative only: longest generated answer")
    num_worst_shown: int = Field(10, ge=0, description="Questions with the lowest F1 in the report")


class QARecipe(RecipeBase):
    """One question-answering run; exactly one of `generative` or `extractive`. Metrics: 'exact_match', 'f1'."""

    METRICS = {"exact_match": "higher", "f1": "higher"}

    name: str = "falcon-squad-qa"
    data: QAData
    generative: GenerativeQA | None = None
    extractive: ExtractiveQA | None = None
    evaluation: QAEvaluationParams = Field(default_factory=QAEvaluationParams)
    registry: RegistrySpec = Field(
        default_factory=lambda: RegistrySpec(experiment="squad-qa", model_name="squad-qa"))
    approval: ApprovalPolicy = Field(
        default_factory=lambda: ApprovalPolicy(min_gain_over_base={"f1": 0.0}))

    @model_validator(mode="after")
    def _exactly_one(self) -> QARecipe:
        if (self.generative is None) == (self.extractive is None):
            raise ValueError("set exactly one of 'generative' or 'extractive'")
        return self

    def sagemaker_steps(self) -> list[str]:
        approach = self.generative or self.extractive
        return [f"{self.approach}.training.backend"] if approach.training.backend == "sagemaker" else []

    @property
    def approach(self) -> Literal["generative", "extractive"]:
        return "generative" if self.generative is not None else "extractive"

    @property
    def model(self) -> CausalModelSpec | ClassifierModelSpec:
        return self.generative.model if self.generative is not None else self.extractive.model

    @property
    def served_kind(self) -> Literal["text-generation", "question-answering"]:
        """Generative models answer the prompt's continuation; extractive ones a span of the context."""
        return "text-generation" if self.generative is not None else "question-answering"

    def random_weights_caveat(self) -> str | None:
        """One line saying what a generative model built offline from random weights can and cannot learn here."""
        if self.generative is None or self.generative.model.tiny is None:
            return None
        return ("generative model built offline with random weights: fine-tuning on these questions teaches it no "
                "reading comprehension (its F1 comes from common words such as 'of', not from the context); set "
                "generative.model.name_or_path to a pretrained causal LM (e.g. tiiuae/falcon-7b) for real figures")
