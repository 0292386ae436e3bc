"""Typed recipes: what model, what data, which hyperparameters. Loaded from YAML plus `key.sub=value` overrides;
Prefect renders them as forms. `base` holds the sections every use case shares, one module per use case the rest."""

from llm_finetune.recipes.base import (
    DATA_URI_HELP,
    ApprovalPolicy,
    AwsSpec,
    DataSource,
    EndpointSpec,
    EvaluationParams,
    RecipeBase,
    RegistrySpec,
    SageMakerCompute,
    SageMakerEndpointSpec,
    SageMakerModelPackageSpec,
    SageMakerProcessing,
    SageMakerSpec,
    SageMakerTraining,
    Strict,
)
from llm_finetune.recipes.chat_inference import (
    COT_STYLES,
    ChatInferenceRecipe,
    DecodingSetting,
    GenerationGrid,
    InferenceTarget,
    PromptSuiteSpec,
    RegisteredModelRef,
    TrackingSpec,
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
from llm_finetune.recipes.jumpstart import JumpStartSpec
from llm_finetune.recipes.loading import apply_overrides, load_recipe, parse_override
from llm_finetune.recipes.pipeline import DialogsumPipelineRecipe, SageMakerPipelineSpec
from llm_finetune.recipes.pretraining import (
    CodeCompletionParams,
    CodePretrainingRecipe,
    ContinuedPretrainingRecipe,
    GPT2ConfigSpec,
    HeldOutSet,
    PerplexityEvaluationParams,
    PretrainingRecipe,
    PretrainModelSpec,
    PretrainParams,
    RawTextData,
)
from llm_finetune.recipes.qa import ExtractiveQA, GenerativeQA, QAData, QAEvaluationParams, QARecipe
from llm_finetune.recipes.summarization import (
    ModelSpec,
    Seq2SeqTrainingParams,
    SummarizationData,
    SummarizationRecipe,
    TinyT5Spec,
)

__all__ = [
    "DATA_URI_HELP", "ApprovalPolicy", "AwsSpec", "DataSource", "EndpointSpec", "EvaluationParams", "ModelSpec",
    "RecipeBase",
    "RegistrySpec", "SageMakerEndpointSpec", "SageMakerModelPackageSpec", "Seq2SeqTrainingParams", "Strict",
    "SummarizationData", "SummarizationRecipe", "TinyT5Spec", "apply_overrides", "load_recipe", "parse_override",
    "SageMakerCompute", "SageMakerProcessing", "SageMakerSpec", "SageMakerTraining",
    "ATTENTION_MODULES", "MIXTRAL_EXPERT_PARAMETERS", "CausalEvaluationParams", "CausalModelSpec", "InstructionData",
    "InstructionRecipe", "LoraSpec", "QuantizationSpec", "SFTParams", "TinyCausalSpec",
    "COT_STYLES", "ChatInferenceRecipe", "DecodingSetting", "GenerationGrid", "InferenceTarget", "PromptSuiteSpec",
    "RegisteredModelRef", "TrackingSpec",
    "DialogsumPipelineRecipe", "SageMakerPipelineSpec", "JumpStartSpec",
    "CodeCompletionParams", "CodePretrainingRecipe", "ContinuedPretrainingRecipe", "GPT2ConfigSpec", "HeldOutSet",
    "PerplexityEvaluationParams", "PretrainingRecipe", "PretrainModelSpec", "PretrainParams", "RawTextData",
    "ClassificationData", "ClassificationEvaluationParams", "ClassificationRecipe", "ClassifierModelSpec",
    "SentimentArm", "SentimentComparisonRecipe", "TrainerParams",
    "ExtractiveQA", "GenerativeQA", "QAData", "QAEvaluationParams", "QARecipe",
]
