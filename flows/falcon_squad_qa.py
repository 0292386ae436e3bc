"""SQuAD question answering on the causal-LM core: generative (default: Falcon answers after a context + question
prompt, completion-only loss through the SFT trainer) or extractive (an encoder with a span head over sliding
windows); SQuAD EM/F1 base vs fine-tuned, the worst-F1 questions, then the shared release path (text-generation or
question-answering).

    llmft run falcon-squad-qa [--recipe recipes/squad_extractive_minilm.yaml] [key.sub=value ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from prefect import flow

from flows.release import ReleaseOutcome, release_model
from llm_finetune.data.qa import qa_test_cases
from llm_finetune.recipes import QARecipe, load_recipe
from llm_finetune.training.extractive_qa import qa_job
from llm_finetune.training.job import TrainingResult
from tasks.aws import aws_from_recipe
from tasks.data import check_qa_data, validate_data
from tasks.evaluation import evaluate_qa_models
from tasks.models import materialize_base_model
from tasks.training import train_model

DEFAULT_RECIPE_PATH = Path(__file__).resolve().parent.parent / "recipes" / "squad_falcon_tiny.yaml"


class QAOutcome(ReleaseOutcome):
    cli_exclude: ClassVar[dict] = {"endpoint_test": {"results"}, "training": {"loss_curve"}, "data_check": True}

    metrics: dict[str, dict[str, float]]
    answers_lost_to_truncation: int | None
    worst: list[dict]
    data_check: dict
    training: TrainingResult
    caveat: str | None = None  # set when the model cannot learn the task here (random weights)


@flow(name="falcon-squad-qa", log_prints=True)
@aws_from_recipe
def falcon_squad_qa(recipe: QARecipe = load_recipe(DEFAULT_RECIPE_PATH, QARecipe)) -> QAOutcome:
    work = recipe.work_dir
    validated = validate_data(recipe.data, work)
    base_model = materialize_base_model(recipe.model, recipe.data, validated, work, recipe.tracking_uri())
    data_check = check_qa_data(recipe, validated, base_model)
    training = train_model(qa_job(recipe, base_model, validated), recipe.sagemaker)
    comparison = evaluate_qa_models(base_model, training, recipe, validated)
    cases = qa_test_cases(validated, recipe.data, recipe.served_kind, base_model, recipe.endpoint.num_test_records,
                          recipe.endpoint.generation.max_new_tokens)
    release = release_model(recipe, base_model, validated.fingerprint, training, comparison.evidence(), cases,
                            kind=recipe.served_kind)
    return QAOutcome(**dict(release), training=training, data_check=data_check, worst=comparison.worst,
                     answers_lost_to_truncation=comparison.finetuned.answers_lost,
                     metrics={"base": comparison.base.metrics, "finetuned": comparison.finetuned.metrics},
                     caveat=recipe.random_weights_caveat())
