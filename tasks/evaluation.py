"""Evaluation task: ROUGE of the base and the fine-tuned model on the same records, side by side."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from llm_finetune.data.intake import ValidatedData
from llm_finetune.data.summarization import summarization_records
from llm_finetune.evaluation.rouge import SummarizationComparison, evaluate_summarizer
from llm_finetune.fingerprint import build_once, fingerprint, name_or_path_key
from llm_finetune.recipes import EvaluationParams, SummarizationData
from llm_finetune.training.seq2seq import TrainingResult


@task(name="evaluate-base-and-finetuned")
def evaluate_base_and_finetuned(
    base_model: str,
    training: TrainingResult,
    data: SummarizationData,
    validated: ValidatedData,
    params: EvaluationParams,
    work_dir: str,
) -> SummarizationComparison:
    """Scores are kept under a fingerprint of both models, the data and the settings: a re-run reads them back."""
    key = fingerprint("summarization-eval-v1", name_or_path_key(base_model), training.fingerprint or training.model_dir,
                      validated.fingerprint, data, params)
    out = Path(work_dir) / "evaluations" / key
    with build_once(out) as needed:
        if needed:
            comparison = _compare(base_model, training.model_dir, data, validated, params)
            (out / "comparison.json").write_text(comparison.model_dump_json())
    comparison = SummarizationComparison.model_validate_json((out / "comparison.json").read_text())
    create_table_artifact(key="rouge-base-vs-finetuned", table=comparison.metric_rows(),
                          description=f"ROUGE on {comparison.finetuned.num_records} validation records")
    create_markdown_artifact(key="sample-summaries", markdown=comparison.markdown(),
                             description="Base vs fine-tuned summaries")
    return comparison


def _compare(base_model: str, finetuned_model: str, data: SummarizationData, validated: ValidatedData,
             params: EvaluationParams) -> SummarizationComparison:
    records = summarization_records(validated, "validation", data, params.max_records)
    runs = [
        evaluate_summarizer(
            model, records, data.prompt_template, batch_size=params.batch_size, generation=params.generation,
            max_source_tokens=data.max_source_tokens,
        )
        for model in (base_model, finetuned_model)
    ]
    samples = [
        {"id": r["id"], "dialogue": r["dialogue"], "reference": r["summary"], "base": b, "finetuned": f}
        for r, b, f in zip(records[: params.num_samples_shown], runs[0].predictions, runs[1].predictions)
    ]
    return SummarizationComparison(base=runs[0], finetuned=runs[1], samples=samples)
