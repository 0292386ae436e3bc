"""Training task: one output directory per (base model, dataset, hyperparameters), so re-runs resume or reuse."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact

from llm_finetune.data.summarization import PreparedDataset
from llm_finetune.fingerprint import fingerprint, name_or_path_key
from llm_finetune.recipes import Seq2SeqTrainingParams
from llm_finetune.training.progress import ProgressCallback, TrainingProgress
from llm_finetune.training.seq2seq import Seq2SeqTrainJob, TrainingResult, train_seq2seq


def training_output_dir(work_dir: str, base_model: str, prepared: PreparedDataset, prompt: str,
                        params: Seq2SeqTrainingParams) -> Path:
    key = fingerprint("seq2seq-v1", name_or_path_key(base_model), prepared.fingerprint, prompt, params)
    return Path(work_dir) / "runs" / key


@task(name="train-summarizer")
def train_summarizer(
    base_model: str, prepared: PreparedDataset, prompt_template: str, params: Seq2SeqTrainingParams, work_dir: str
) -> TrainingResult:
    """Seq2SeqTrainer fine-tune; resumes from the last checkpoint if an earlier run was interrupted."""
    out = training_output_dir(work_dir, base_model, prepared, prompt_template, params)
    job = Seq2SeqTrainJob(
        base_model=base_model, dataset_dir=prepared.path, output_dir=str(out), prompt_template=prompt_template,
        params=params,
    )
    logger = get_run_logger()
    artifact_id = create_progress_artifact(0.0, key="training-progress", description="Training steps done / total")

    def report(progress: TrainingProgress) -> None:
        update_progress_artifact(artifact_id, progress.percent, description=(
            f"step {progress.step} / {progress.max_steps}"
            + (f", loss {progress.loss:.4f}" if progress.loss is not None else "")))

    result = train_seq2seq(job, callbacks=[ProgressCallback(report)]).model_copy(update={"fingerprint": out.name})
    update_progress_artifact(artifact_id, 100.0, description=f"step {result.global_step} / {result.global_step}")
    if result.reused:
        logger.info("reused finished model %s", result.model_dir)
    elif result.resumed_from_checkpoint:
        logger.info("resumed from %s", result.resumed_from_checkpoint)
    rows = "\n".join(f"| {p['step']} | {p['loss']:.4f} |" for p in result.loss_curve)
    create_markdown_artifact(
        key="training-loss-curve",
        markdown=(
            f"## Training\n\nsteps: {result.global_step}, final mean loss: {result.train_loss}, "
            f"tokens/s: {result.tokens_per_second:,.0f} (real tokens {result.real_tokens:,} of "
            f"{result.padded_tokens:,} padded)\n\n| step | loss |\n|---|---|\n{rows}\n"
        ),
        description="Training loss by logging step",
    )
    return result
