"""ROUGE-1/2/L/Lsum as Hugging Face `evaluate`'s rouge computes it by default (rouge_score, no stemming, its default
tokenizer), with sentences on separate lines for rougeLsum (as the Hugging Face summarization examples do), averaged
over records."""

from __future__ import annotations

import time

from pydantic import BaseModel

from llm_finetune.evaluation.comparison import ReleaseEvidence, paired_means
from llm_finetune.evaluation.sentences import sentences
from llm_finetune.generation import GenerationParams
from llm_finetune.inference.summarizer import Summarizer

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def _sentences_per_line(text: str) -> str:
    # rougeLsum scores summary-level LCS over newline-separated sentences.
    return "\n".join(sentences(text))


def rouge_per_record(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """F-measure of each record per ROUGE variant, in input order (the paired values the approval gate resamples)."""
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions vs {len(references)} references")
    if not predictions:
        raise ValueError("no predictions to score")
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=False)
    per_record: dict[str, list[float]] = {key: [] for key in ROUGE_KEYS}
    for pred, ref in zip(predictions, references):
        scores = scorer.score(_sentences_per_line(ref), _sentences_per_line(pred))
        for key in ROUGE_KEYS:
            per_record[key].append(scores[key].fmeasure)
    return per_record


def rouge_scores(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean F-measure per ROUGE variant."""
    return {key: sum(values) / len(values) for key, values in rouge_per_record(predictions, references).items()}


class SummarizationEval(BaseModel):
    """ROUGE of one model on one set of records, with its predictions."""

    model: str
    metrics: dict[str, float]
    per_record: dict[str, list[float]] = {}  # ROUGE variant -> each record's F-measure
    predictions: list[str]
    num_records: int
    seconds: float
    records_per_second: float


def evaluate_summarizer(
    model_dir: str,
    records: list[dict],
    prompt_template: str,
    *,
    batch_size: int,
    generation: GenerationParams | None = None,
    max_source_tokens: int = 512,
) -> SummarizationEval:
    """Generate summaries for `records` ({'dialogue', 'summary'}) and score them against the references."""
    summarizer = Summarizer(model_dir, prompt_template=prompt_template)
    start = time.perf_counter()
    predictions = summarizer.summarize(
        [r["dialogue"] for r in records], generation, batch_size=batch_size, max_source_tokens=max_source_tokens
    )
    seconds = time.perf_counter() - start
    per_record = rouge_per_record(predictions, [r["summary"] for r in records])
    return SummarizationEval(
        model=str(model_dir),
        metrics={key: sum(values) / len(values) for key, values in per_record.items()},
        per_record=per_record,
        predictions=predictions,
        num_records=len(records),
        seconds=seconds,
        records_per_second=len(records) / seconds if seconds > 0 else 0.0,
    )


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

    def evidence(self) -> ReleaseEvidence:
        return ReleaseEvidence(base_metrics=self.base.metrics, finetuned_metrics=self.finetuned.metrics,
                               samples=self.samples, report_markdown=self.markdown(),
                               num_records=self.finetuned.num_records,
                               per_record=paired_means(self.base.per_record, self.finetuned.per_record))
