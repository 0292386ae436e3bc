"""Pretraining recipes on raw text: continued pretraining of a registered model's champion on a growing corpus
(movie plots), and GPT-2 from scratch with its own tokenizer (Python code, CodeParrot)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from llm_finetune.generation import GenerationParams
from llm_finetune.recipes.base import (
    DATA_URI_HELP,
    ApprovalPolicy,
    DataSource,
    MetricDirection,
    RecipeBase,
    RegistrySpec,
    Strict,
    TrainingLoopParams,
)
from llm_finetune.recipes.paths import CwdPath, RecipePath


class RawTextData(DataSource):
    """Raw text documents, one per record (JSON Lines / CSV / Parquet field, or a .txt line), tokenized and packed
    into fixed blocks of `block_size` tokens with EOS between documents; no padding."""

    shape_module: ClassVar[str] = "llm_finetune.data.raw_text"  # its record rules: a DataShape named SHAPE

    text_field: str = Field("text", description="The field holding each document's text ('content' in CodeParrot)")
    block_size: int = Field(128, ge=8, description="Tokens per training block (run_clm's block_size); the tokens "
                            "left over after the last full block are dropped, as run_clm does")


class HeldOutSet(Strict):
    """Documents a model is scored on and never trained on: perplexity of their packed tokens."""

    uri: RecipePath = Field(description=DATA_URI_HELP)
    text_field: str = "text"
    format: Literal["json", "csv", "tsv", "parquet", "arrow", "text"] | None = None
    max_documents: int | None = Field(50, gt=0, description="Use only the first N documents")


class GPT2ConfigSpec(Strict):
    """A GPT-2 with random weights built from these sizes, and its tokenizer (works offline)."""

    tokenizer: Literal["gpt2", "train"] = Field(
        "gpt2", description="gpt2: the exact GPT-2 tokenizer (50,257 tokens), built offline; train: a byte-level BPE "
        "of vocab_size tokens trained on the training split (CodeParrot)")
    vocab_size: int = Field(32768, ge=300, description="Tokens of a trained tokenizer (tokenizer: train)")
    n_embd: int = Field(64, gt=0, description="Hidden size (GPT-2 small / CodeParrot-small: 768)")
    n_layer: int = Field(2, gt=0, description="Transformer blocks (GPT-2 small: 12)")
    n_head: int = Field(4, gt=0, description="Attention heads (GPT-2 small: 12)")
    n_positions: int = Field(1024, gt=0, description="Longest sequence the model can read")
    seed: int = 0

    @model_validator(mode="after")
    def _heads_divide_width(self) -> GPT2ConfigSpec:
        if self.n_embd % self.n_head:
            raise ValueError("n_embd must be a multiple of n_head")
        return self


class PretrainModelSpec(Strict):
    """Where pretraining starts: a Hub id or local directory of a causal LM (gpt2, meta-llama/Llama-2-7b-hf), or
    a GPT-2 built from a config (random weights)."""

    name_or_path: CwdPath | None = Field(None, description="Hub id or local directory of a causal LM with a tokenizer")
    config: GPT2ConfigSpec | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PretrainModelSpec:
        if (self.name_or_path is None) == (self.config is None):
            raise ValueError("set exactly one of 'name_or_path' or 'config'")
        return self


class PretrainParams(TrainingLoopParams):
    """Hyperparameters passed to transformers' Trainer (causal LM on packed blocks)."""

    learning_rate: float = Field(5e-4, gt=0, description="5e-4 as CodeParrot-small from scratch; continued "
                                 "pretraining of a large pretrained model uses ~1e-5")
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    weight_decay: float = Field(0.1, ge=0, description="0.1 as CodeParrot")
    per_device_train_batch_size: int = Field(8, gt=0, description="Blocks per device and step")
    activation_checkpointing: bool = Field(False, description="Less memory, ~20-50% slower")


class PerplexityEvaluationParams(Strict):
    """Perplexity on held-out documents: the validation split (in domain) and named other sets (out of domain)."""

    max_documents: int | None = Field(50, gt=0, description="Validation documents scored (in domain)")
    out_of_domain: dict[str, HeldOutSet] = Field(
        default_factory=dict, description="Named held-out sets of other text; each gets a `perplexity_<name>` metric "
        "and all together `perplexity_out_of_domain`")
    batch_size: int = Field(8, gt=0, description="Blocks per forward pass")
    num_samples_shown: int = Field(3, ge=0, description="Held-out documents continued by both models in the report")
    sample_prompt_tokens: int = Field(32, gt=0, description="Tokens of a held-out document given as the prompt")
    generation: GenerationParams = Field(default_factory=lambda: GenerationParams(max_new_tokens=32))

    @model_validator(mode="after")
    def _set_names(self) -> PerplexityEvaluationParams:
        reserved = {"in_domain", "out_of_domain"} & set(self.out_of_domain)
        if reserved:
            raise ValueError(f"out_of_domain set names {sorted(reserved)} are reserved (the validation split, all "
                             "out-of-domain sets together); choose others")
        return self


DEFAULT_CODE_PROMPTS = [
    'def fibonacci(n: int) -> int:\n    """Return the n-th Fibonacci number."""\n',
    'def is_prime(number: int) -> bool:\n    """Return True if number is a prime number."""\n',
    'def binary_search(items: list[int], target: int) -> int:\n'
    '    """Return the index of target in the sorted list items, or -1."""\n',
    'def reverse_words(sentence: str) -> str:\n    """Return the words of sentence in reverse order."""\n',
    'def factorial(n: int) -> int:\n    """Return n! computed iteratively."""\n',
    'def gcd(a: int, b: int) -> int:\n    """Greatest common divisor of a and b (Euclid)."""\n',
    'def bubble_sort(collection: list) -> list:\n    """Sort collection in ascending order with bubble sort."""\n',
    'def celsius_to_fahrenheit(celsius: float) -> float:\n    """Convert Celsius to Fahrenheit."""\n',
]


class CodeCompletionParams(Strict):
    """Completions of fixed Python prompts (function signatures with docstrings): does a completion add a statement to
    the function body, and does the program parse?"""

    prompts: list[str] = Field(default_factory=lambda: list(DEFAULT_CODE_PROMPTS), min_length=1,
                               description="Each a function signature with its docstring, ending in a newline")
    generation: GenerationParams = Field(
        default_factory=lambda: GenerationParams(max_new_tokens=64, repetition_penalty=1.0),
        description="Greedy by default; CodeParrot samples (do_sample, temperature 0.2, top_p 0.95) for pass@k")


class PretrainingRecipe(RecipeBase):
    """Causal-LM pretraining on packed raw text. Metrics: 'perplexity_in_domain', 'perplexity_<set>',
    'perplexity_out_of_domain' (lower is better)."""

    name: str = "pretraining"
    data: RawTextData
    model: PretrainModelSpec
    training: PretrainParams = Field(default_factory=PretrainParams)
    evaluation: PerplexityEvaluationParams = Field(default_factory=PerplexityEvaluationParams)
    registry: RegistrySpec
    approval: ApprovalPolicy

    def metric_directions(self) -> dict[str, MetricDirection]:
        sets = ["in_domain", *self.evaluation.out_of_domain, *(["out_of_domain"] if self.evaluation.out_of_domain
                                                               else [])]
        return {f"perplexity_{name}": "lower" for name in sets}


def _promotion_policy() -> ApprovalPolicy:
    return ApprovalPolicy(min_metrics={}, min_relative_decrease={"perplexity_in_domain": 0.01},
                          max_relative_increase={"perplexity_out_of_domain": 0.05}, manual_review=False,
                          previous_alias="previous-champion")


class ContinuedPretrainingRecipe(PretrainingRecipe):
    """Scheduled continued pretraining: the registered champion (or the base model on the first run) trained on the
    documents it has not seen plus a replayed share of those it has, then promoted only if it beats the champion."""

    name: str = "continued-pretraining"
    replay_share: float = Field(
        0.25, ge=0, lt=1, description="Share of each training mix drawn from documents the champion was already "
        "trained on (limits forgetting); 0 trains on the new documents only")
    registry: RegistrySpec = Field(default_factory=lambda: RegistrySpec(experiment="continued-pretraining",
                                                                        model_name="continued-pretraining"))
    approval: ApprovalPolicy = Field(default_factory=_promotion_policy, description=(
        "Promotion: min_relative_decrease (in-domain perplexity must fall by at least this share vs the champion) and "
        "max_relative_increase (out-of-domain perplexity may rise by at most this share); manual_review false "
        "records a failing challenger as rejected with the reasons"))


class CodePretrainingRecipe(PretrainingRecipe):
    """GPT-2 from scratch on Python code with its own byte-level BPE (CodeParrot). Metrics add 'body_parse_rate' and
    'mean_added_lines' of the code completions (higher is better)."""

    name: str = "gpt2-code-from-scratch"

    def metric_directions(self) -> dict[str, MetricDirection]:
        return {**super().metric_directions(), "body_parse_rate": "higher", "mean_added_lines": "higher"}

    completions: CodeCompletionParams = Field(default_factory=CodeCompletionParams)
    registry: RegistrySpec = Field(default_factory=lambda: RegistrySpec(experiment="gpt2-code-from-scratch",
                                                                        model_name="gpt2-code-from-scratch"))
    approval: ApprovalPolicy = Field(default_factory=lambda: ApprovalPolicy(
        min_metrics={}, min_relative_decrease={"perplexity_in_domain": 0.5}, manual_review=False))
