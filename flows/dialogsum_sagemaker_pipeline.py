"""DialogSum -> FLAN-T5 as a SageMaker Pipeline: upsert the definition, start it, wait for it.

    llmft run dialogsum-sagemaker-pipeline --recipe recipes/dialogsum_sagemaker_pipeline.yaml [key.sub=value ...]

The pipeline (llm_finetune/pipelines/dialogsum.py) prepares, trains, evaluates and, when ROUGE clears the recipe's
bar, registers a model package (PendingManualApproval) in registry.sagemaker's group.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from llm_finetune.pipelines.dialogsum import PipelineRun
from llm_finetune.recipes import DialogsumPipelineRecipe, load_recipe
from tasks.aws import aws_from_recipe
from tasks.pipeline import start_sagemaker_pipeline, upsert_sagemaker_pipeline, wait_for_sagemaker_pipeline

DEFAULT_RECIPE_PATH = Path(__file__).resolve().parent.parent / "recipes" / "dialogsum_sagemaker_pipeline.yaml"


class PipelineExecutionFailed(RuntimeError):
    """The SageMaker Pipeline execution ended other than Succeeded."""


@flow(name="dialogsum-sagemaker-pipeline", log_prints=True)
@aws_from_recipe
def dialogsum_sagemaker_pipeline(
    recipe: DialogsumPipelineRecipe = load_recipe(DEFAULT_RECIPE_PATH, DialogsumPipelineRecipe),
) -> PipelineRun:
    pipeline_arn = upsert_sagemaker_pipeline(recipe)
    execution_arn = start_sagemaker_pipeline(recipe)
    status, reason = wait_for_sagemaker_pipeline(recipe, execution_arn)
    run = PipelineRun(pipeline_arn=pipeline_arn, execution_arn=execution_arn, status=status, failure_reason=reason)
    if status != "Succeeded":
        raise PipelineExecutionFailed(f"{execution_arn} ended {status}: {reason or 'no reason given'}")
    return run
