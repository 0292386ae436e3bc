"""Training task: run any trainer's job through its backend (a local process, or a SageMaker training job), with live
progress and, for SageMaker, a cost estimate published before launching."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact

from llm_finetune.backends.cost import CostEstimate
from llm_finetune.backends.local import run_training_process
from llm_finetune.backends.sagemaker import run_sagemaker_training
from llm_finetune.recipes import SageMakerSpec
from llm_finetune.training.job import TrainingResult, TrainJob
from llm_finetune.training.progress import TrainingProgress


def publish_cost_estimate(estimate: CostEstimate) -> None:
    create_markdown_artifact(key=f"sagemaker-{estimate.kind}-cost", markdown=estimate.markdown(),
                             description=estimate.summary())


@task(name="train-model")
def train_model(job: TrainJob, sagemaker: SageMakerSpec | None = None) -> TrainingResult:
    """Train where the job's `backend` says: a child process (torchrun when the job asks for several) or a SageMaker
    training job (settings from the recipe's `sagemaker` section); resume an interrupted run, reuse a finished one.
    The job's output folder is named by its fingerprint, which the result carries."""
    logger = get_run_logger()
    artifact_id = create_progress_artifact(0.0, key="training-progress", description="Training steps done / total")

    def report(progress: TrainingProgress) -> None:
        update_progress_artifact(artifact_id, progress.percent, description=(
            f"step {progress.step} / {progress.max_steps}"
            + (f", loss {progress.loss:.4f}" if progress.loss is not None else "")))

    if job.backend == "sagemaker":
        if sagemaker is None:
            raise ValueError("training.backend is 'sagemaker': pass the recipe's `sagemaker` section")
        result = run_sagemaker_training(job, sagemaker, on_progress=report, on_output=logger.info,
                                        on_estimate=publish_cost_estimate)
    else:
        result = run_training_process(job, on_progress=report, on_output=logger.info)
    # A JumpStart fine-tune reports its own fingerprint (the trainer differs from the job's).
    result = result.model_copy(update={"fingerprint": result.fingerprint or Path(job.output_dir).name})
    update_progress_artifact(artifact_id, 100.0, description=f"step {result.global_step} / {result.global_step}")
    if result.reused:
        logger.info("reused finished model %s", result.model_dir)
    elif result.resumed_from_checkpoint:
        logger.info("resumed from %s", result.resumed_from_checkpoint)
    rows = "\n".join(f"| {p['step']} | {p['loss']:.4f} |" for p in result.loss_curve)
    loss = "n/a" if result.train_loss is None else f"{result.train_loss:.4f}"
    create_markdown_artifact(
        key="training-loss-curve",
        markdown=(
            f"## Training\n\nsteps: {result.global_step}, final mean loss: {loss}, "
            f"tokens/s: {result.tokens_per_second:,.0f} (real tokens {result.real_tokens:,} of "
            f"{result.padded_tokens:,} padded)\n\n| step | loss |\n|---|---|\n{rows}\n"
        ),
        description="Training loss by logging step",
    )
    return result
