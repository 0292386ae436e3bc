"""Evaluation task: ROUGE of the base and the fine-tuned model on the same records, side by side."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel

from llm_finetune.data.summarization import ValidatedSplits, read_split
from llm_finetune.evaluation.rouge import ROUGE_KEYS, SummarizationEval, evaluate_summarizer
from llm_finetune.recipes import EvaluationParams, SummarizationData


class SummarizationComparison(BaseModel):
    base: SummarizationEval
    finetuned: SummarizationEval
    samples: list[dict]

    def metric_rows(self) -> list[dict]:
        return [
            {
                "metric": k,
                "base": round(self.base.metrics[k], 4),
                "fine_tuned": round(self.finetuned.metrics[k], 4),
                "gain": round(self.finetuned.metrics[k] - self.base.metrics[k], 4),
            }
            for k in ROUGE_KEYS
        ]

    def markdown(self) -> str:
        lines = ["| metric | base | fine-tuned | gain |", "|---|---|---|---|"]
        lines += [f"| {r['metric']} | {r['base']} | {r['fine_tuned']} | {r['gain']:+} |" for r in self.metric_rows()]
        for s in self.samples:
            lines += [
                "", f"### {s['id']}", f"**Dialogue:** {s['dialogue'][:600]}", "",
                f"- **reference:** {s['reference']}", f"- **base:** {s['base']}", f"- **fine-tuned:** {s['finetuned']}",
            ]
        return "\n".join(lines)


@task(name="evaluate-base-and-finetuned")
def evaluate_base_and_finetuned(
    base_model: str, finetuned_model: str, data: SummarizationData, splits: ValidatedSplits, params: EvaluationParams
) -> SummarizationComparison:
    records = read_split(splits.validation_path, data, params.max_records)
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
    comparison = SummarizationComparison(base=runs[0], finetuned=runs[1], samples=samples)
    create_table_artifact(key="rouge-base-vs-finetuned", table=comparison.metric_rows(),
                          description=f"ROUGE on {len(records)} validation records")
    create_markdown_artifact(key="sample-summaries", markdown=comparison.markdown(),
                             description="Base vs fine-tuned summaries")
    return comparison
