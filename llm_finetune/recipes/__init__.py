"""Typed recipes: what model, what data, which hyperparameters. Loaded from YAML plus `key.sub=value` overrides;
Prefect renders them as forms. `base` holds the sections every use case shares, one module per use case the rest."""

from llm_finetune.recipes.base import (
    DATA_URI_HELP,
    ApprovalPolicy,
    DataSource,
    EndpointSpec,
    EvaluationParams,
    RecipeBase,
    RegistrySpec,
    Strict,
)
from llm_finetune.recipes.instruction import (
    ATTENTION_MODULES,
    MIXTRAL_EXPERT_PARAMETERS,
    CausalEvaluationParams,
    CausalModelSpec,
    InstructionData,
    InstructionRecipe,
    LoraSpec,
    QuantizationSpec,
    SFTParams,
    TinyCausalSpec,
)
from llm_finetune.recipes.classification import (
    ClassificationData,
    ClassificationEvaluationParams,
    ClassificationRecipe,
    ClassifierModelSpec,
    SentimentArm,
    SentimentComparisonRecipe,
    TrainerParams,
)
from llm_finetune.recipes.loading import apply_overrides, load_recipe, parse_override
from llm_finetune.recipes.qa import ExtractiveQA, GenerativeQA, QAData, QAEvaluationParams, QARecipe
from llm_finetune.recipes.summarization import (
    ModelSpec,
    Seq2SeqTrainingParams,
    SummarizationData,
    SummarizationRecipe,
    TinyT5Spec,
)

__all__ = [
    "DATA_URI_HELP", "ApprovalPolicy", "DataSource", "EndpointSpec", "EvaluationParams", "ModelSpec", "RecipeBase",
    "RegistrySpec", "Seq2SeqTrainingParams", "Strict", "SummarizationData", "SummarizationRecipe", "TinyT5Spec",
    "apply_overrides", "load_recipe", "parse_override",
    "ATTENTION_MODULES", "MIXTRAL_EXPERT_PARAMETERS", "CausalEvaluationParams", "CausalModelSpec", "InstructionData",
    "InstructionRecipe", "LoraSpec", "QuantizationSpec", "SFTParams", "TinyCausalSpec",
    "ClassificationData", "ClassificationEvaluationParams", "ClassificationRecipe", "ClassifierModelSpec",
    "SentimentArm", "SentimentComparisonRecipe", "TrainerParams",
    "ExtractiveQA", "GenerativeQA", "QAData", "QAEvaluationParams", "QARecipe",
]
