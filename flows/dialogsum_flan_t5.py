"""DialogSum -> FLAN-T5: prepare, train, evaluate, register, approve, deploy, test the endpoint.

    llmft run dialogsum-flan-t5 [--recipe FILE] [key.sub=value ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from prefect import flow

from flows.release import ReleaseOutcome, release_model
from llm_finetune.data.summarization import summarization_test_cases
from llm_finetune.recipes import SummarizationRecipe, load_recipe
from llm_finetune.training.seq2seq import seq2seq_job
from tasks.aws import aws_from_recipe
from tasks.data import prepare_summarization_dataset, validate_data
from tasks.evaluation import evaluate_base_and_finetuned
from tasks.models import materialize_base_model
from tasks.training import train_model

DEFAULT_RECIPE_PATH = Path(__file__).resolve().parent.parent / "recipes" / "dialogsum_flan_t5_tiny.yaml"


class DialogsumOutcome(ReleaseOutcome):
    # `llmft run` prints the outcome without per-record results; they are in the endpoint-inference-test artifact.
    cli_exclude: ClassVar[dict] = {"endpoint_test": {"results"}}

    metrics: dict[str, dict[str, float]]


@flow(name="dialogsum-flan-t5", log_prints=True)
@aws_from_recipe
def dialogsum_flan_t5(recipe: SummarizationRecipe = load_recipe(DEFAULT_RECIPE_PATH)) -> DialogsumOutcome:
    work = recipe.work_dir
    validated = validate_data(recipe.data, work)
    base_model = materialize_base_model(recipe.model, recipe.data, validated, work)
    prepared = prepare_summarization_dataset(recipe.data, validated, base_model, work, recipe.sagemaker)
    training = train_model(seq2seq_job(base_model, prepared.path, prepared.fingerprint, recipe.data.prompt_template,
                                       recipe.training, work), recipe.sagemaker)
    comparison = evaluate_base_and_finetuned(base_model, training, recipe.data, validated, recipe.evaluation,
                                             work)
    release = release_model(recipe, base_model, prepared.fingerprint, training, comparison.evidence(),
                            summarization_test_cases(validated, recipe.data, recipe.endpoint.num_test_records),
                            kind="text2text-generation")
    return DialogsumOutcome(**dict(release), metrics={"base": comparison.base.metrics,
                                                      "finetuned": comparison.finetuned.metrics})
