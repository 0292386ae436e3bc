"""What the release path needs from any use case's evaluation: both models' metrics and a report to review."""

from __future__ import annotations

from pydantic import BaseModel


class ReleaseEvidence(BaseModel):
    """Metrics of the base and the fine-tuned model on the same records, samples, and a markdown report."""

    base_metrics: dict[str, float]
    finetuned_metrics: dict[str, float]
    samples: list[dict]
    report_markdown: str
    num_records: int
