"""SageMaker Pipeline tasks: upsert the definition, start an execution, wait for it."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from llm_finetune.aws import is_permanent, sagemaker_client
from llm_finetune.pipelines.dialogsum import start_pipeline, upsert_pipeline, wait_for_execution
from llm_finetune.recipes import DialogsumPipelineRecipe


def _may_pass_on_retry(task, task_run, state) -> bool:
    """Retry what may pass later, not missing credentials or a request the service refused."""
    return not is_permanent(state.result(raise_on_failure=False))


@task(name="upsert-sagemaker-pipeline", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_may_pass_on_retry)
def upsert_sagemaker_pipeline(recipe: DialogsumPipelineRecipe) -> str:
    """Build the pipeline from the recipe and create or update it; its ARN. The steps show in an artifact."""
    bundle = Path(recipe.work_dir) / "pipelines" / recipe.pipeline.name / "bundle"
    arn, definition = upsert_pipeline(recipe, bundle)
    steps = json.loads(definition)["Steps"]
    rows = "\n".join(f"| {s['Name']} | {s['Type']} |" for s in steps)
    create_markdown_artifact(key="sagemaker-pipeline", description="The upserted SageMaker Pipeline", markdown=(
        f"## {arn}\n\n| step | type |\n|---|---|\n{rows}\n"))
    get_run_logger().info("upserted %s (%d top-level steps)", arn, len(steps))
    return arn


@task(name="start-sagemaker-pipeline", retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=_may_pass_on_retry)
def start_sagemaker_pipeline(recipe: DialogsumPipelineRecipe) -> str:
    """Start one execution with the recipe's parameters (a retry of this flow run does not start a second)."""
    spec = recipe.pipeline
    parameters = {"InputDataUri": recipe.input_data_uri(), "MinRouge": recipe.approval.min_metrics[spec.condition_metric],
                  "ModelApprovalStatus": spec.model_approval_status}
    arn = start_pipeline(sagemaker_client(), spec.name, parameters, token=str(flow_run.id or spec.name))
    get_run_logger().info("started %s", arn)
    return arn


@task(name="wait-for-sagemaker-pipeline")
def wait_for_sagemaker_pipeline(recipe: DialogsumPipelineRecipe, execution_arn: str) -> tuple[str, str | None]:
    """Poll until the execution ends; (status, failure reason)."""
    status, reason = wait_for_execution(sagemaker_client(), execution_arn, recipe.pipeline.wait_timeout_s,
                                        recipe.pipeline.poll_interval_s)
    get_run_logger().info("%s: %s%s", execution_arn, status, f" ({reason})" if reason else "")
    return status, reason
