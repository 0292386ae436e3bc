"""DialogSum -> FLAN-T5: prepare, train, evaluate, register, approve, deploy, test the endpoint.

    llmft run dialogsum-flan-t5 [--recipe FILE] [key.sub=value ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from prefect import flow
from pydantic import BaseModel, Field

from llm_finetune.approval import ApprovalDecision
from llm_finetune.recipes import SummarizationRecipe, load_recipe
from llm_finetune.registry.mlflow_registry import RegisteredModelVersion
from llm_finetune.serving.endpoint import EndpointHandle
from llm_finetune.training.seq2seq import seq2seq_job
from tasks.approval import approval_gate
from tasks.data import prepare_summarization_dataset, validate_summarization_data
from tasks.endpoint import deploy_local_endpoint, stop_endpoint
from tasks.evaluation import evaluate_base_and_finetuned
from tasks.inference import EndpointTestReport, test_endpoint_inference
from tasks.models import materialize_base_model
from tasks.registry import register_summarizer
from tasks.training import train_model

DEFAULT_RECIPE_PATH = Path(__file__).resolve().parent.parent / "recipes" / "dialogsum_flan_t5_tiny.yaml"


class DialogsumOutcome(BaseModel):
    # `llmft run` prints the outcome without per-record results; they are in the endpoint-inference-test artifact.
    cli_exclude: ClassVar[dict] = {"endpoint_test": {"results"}}

    version: RegisteredModelVersion
    decision: ApprovalDecision
    metrics: dict[str, dict[str, float]]
    endpoint_test: EndpointTestReport | None
    running_endpoint: EndpointHandle | None = Field(None, description="Set when endpoint.keep_running is true")


@flow(name="dialogsum-flan-t5", log_prints=True)
def dialogsum_flan_t5(recipe: SummarizationRecipe = load_recipe(DEFAULT_RECIPE_PATH)) -> DialogsumOutcome:
    work = recipe.work_dir
    validated = validate_summarization_data(recipe.data, work)
    base_model = materialize_base_model(recipe.model, recipe.data, validated, work)
    prepared = prepare_summarization_dataset(recipe.data, validated, base_model, work)
    training = train_model(seq2seq_job(base_model, prepared.path, prepared.fingerprint, recipe.data.prompt_template,
                                       recipe.training, work))
    comparison = evaluate_base_and_finetuned(base_model, training, recipe.data, validated, recipe.evaluation,
                                             work)
    version = register_summarizer(recipe, base_model, prepared, training, comparison)
    decision = approval_gate(recipe.approval, comparison, version, recipe.tracking_uri())
    outcome = DialogsumOutcome(
        version=version,
        decision=decision,
        metrics={"base": comparison.base.metrics, "finetuned": comparison.finetuned.metrics},
        endpoint_test=None,
    )
    if not decision.approved:
        return outcome
    endpoint = deploy_local_endpoint(version, recipe.tracking_uri(), recipe.endpoint, work)
    try:
        outcome.endpoint_test = test_endpoint_inference(endpoint.url, recipe.data, validated, recipe.endpoint)
    finally:  # an endpoint is left up only when asked for and only when it passed its test
        if recipe.endpoint.keep_running and outcome.endpoint_test is not None:
            outcome.running_endpoint = endpoint
        else:
            stop_endpoint(endpoint)
    return outcome

