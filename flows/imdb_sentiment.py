"""IMDB sentiment (text -> label): validate, report class balance, train one arm's classifier (GPT-2, a BERT-class
encoder, LoRA on a 4-bit GPT-2-large, Gemma-2 with LoRA, or a registered model by alias), evaluate base vs
fine-tuned (accuracy, macro-F1, confusion matrix), then the shared release path; served as text-classification.

    llmft run imdb-sentiment [--recipe recipes/imdb_sentiment_bert_minilm.yaml] [key.sub=value ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from prefect import flow
from pydantic import BaseModel

from flows.release import ReleaseOutcome, release_model
from llm_finetune.data.classification import classification_test_cases
from llm_finetune.data.intake import ValidatedData
from llm_finetune.evaluation.classification import ClassificationComparison
from llm_finetune.recipes import ClassificationRecipe, load_recipe
from llm_finetune.training.classification import ClassificationTrainingResult, classification_job
from tasks.aws import aws_from_recipe
from tasks.data import report_class_balance, validate_data
from tasks.evaluation import evaluate_classifiers
from tasks.models import materialize_base_model
from tasks.training import train_model

DEFAULT_RECIPE_PATH = Path(__file__).resolve().parent.parent / "recipes" / "imdb_sentiment_gpt2_tiny.yaml"


class ClassifierRun(BaseModel):
    """One trained and evaluated classifier (one arm at one seed)."""

    base_model: str
    validated: ValidatedData
    class_balance: dict[str, dict[str, int]]
    training: ClassificationTrainingResult
    comparison: ClassificationComparison


class SentimentOutcome(ReleaseOutcome):
    cli_exclude: ClassVar[dict] = {"endpoint_test": {"results"}, "training": {"loss_curve"}}

    metrics: dict[str, dict[str, float]]
    confusion: list[list[int]]
    class_balance: dict[str, dict[str, int]]
    training: ClassificationTrainingResult


@flow(name="train-and-evaluate-classifier")
def train_and_evaluate_classifier(recipe: ClassificationRecipe) -> ClassifierRun:
    """Every stage before release; each is cached by content, so a repeated arm and seed reuses its run."""
    work = recipe.work_dir
    validated = validate_data(recipe.data, work)
    balance = report_class_balance(recipe.data, validated)
    base_model = materialize_base_model(recipe.model, recipe.data, validated, work, recipe.tracking_uri())
    training = train_model(classification_job(base_model, validated, recipe.data, recipe.lora, recipe.training, work),
                           recipe.sagemaker)
    comparison = evaluate_classifiers(base_model, training, recipe.data, validated, recipe.evaluation,
                                      recipe.training.seed, work)
    return ClassifierRun(base_model=base_model, validated=validated, class_balance=balance, training=training,
                         comparison=comparison)


@flow(name="imdb-sentiment", log_prints=True)
@aws_from_recipe
def imdb_sentiment(recipe: ClassificationRecipe = load_recipe(DEFAULT_RECIPE_PATH, ClassificationRecipe)
                   ) -> SentimentOutcome:
    run = train_and_evaluate_classifier(recipe)
    release = release_model(recipe, run.base_model, run.validated.fingerprint, run.training,
                            run.comparison.evidence(),
                            classification_test_cases(run.validated, recipe.data, recipe.endpoint.num_test_records),
                            kind="text-classification")
    return SentimentOutcome(**dict(release), training=run.training, class_balance=run.class_balance,
                            confusion=run.comparison.finetuned.confusion,
                            metrics={"base": run.comparison.base.metrics, "finetuned": run.comparison.finetuned.metrics})
