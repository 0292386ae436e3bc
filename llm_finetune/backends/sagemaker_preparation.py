"""Data preparation as a SageMaker Processing job: the data layer's own code, run in the container (S3 in and
out), into the same cache folder a local run would use."""

from __future__ import annotations

from pathlib import Path

from llm_finetune.backends.sagemaker import run_sagemaker_processing
from llm_finetune.data.intake import ValidatedData
from llm_finetune.data.summarization import PreparationJob, PreparedDataset
from llm_finetune.recipes import SummarizationData


def prepare_summarization_dataset_on_sagemaker(data: SummarizationData, validated: ValidatedData,
                                               tokenizer_name_or_path: str, cache_root: str | Path, spec,
                                               **callbacks) -> PreparedDataset:
    """prepare_summarization_dataset as a SageMaker Processing job (same code, S3 in and out), into the same cache
    folder a local run would use; `spec` is the recipe's SageMakerSpec, callbacks go to run_sagemaker_processing."""
    job = PreparationJob(data=data, validated=validated, tokenizer=tokenizer_name_or_path, cache_root=str(cache_root))

    def localize(folder: Path) -> None:  # the container wrote its own path into prepared.json
        prepared = PreparedDataset.model_validate_json((folder / "prepared.json").read_text())
        if prepared.fingerprint != job.key:
            raise RuntimeError(f"the processing job prepared {prepared.fingerprint}, expected {job.key}")
        (folder / "prepared.json").write_text(
            prepared.model_copy(update={"path": str(folder / "dataset")}).model_dump_json(indent=2))

    folder, reused = run_sagemaker_processing(job, job.key, spec, cache_root, localize=localize, **callbacks)
    prepared = PreparedDataset.model_validate_json((folder / "prepared.json").read_text())
    return prepared.model_copy(update={"reused": reused})
