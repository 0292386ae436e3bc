"""What the release path needs from any use case's evaluation: both models' metrics, each metric's per-record values
(so the approval gate can measure a gain with its uncertainty) and a report to review."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator


class PairedScores(BaseModel):
    """One metric's per-record values for the base and the fine-tuned model on the same records, in the same order.

    The metric over any set of records is `scale * sum(values) / sum(weights)` (no weights: the mean), then `exp`
    of that for `transform: exp` (perplexity from summed token losses and token counts)."""

    base: list[float]
    finetuned: list[float]
    base_weights: list[float] | None = None
    finetuned_weights: list[float] | None = None
    transform: Literal["identity", "exp"] = "identity"
    scale: float = 1.0

    @model_validator(mode="after")
    def _paired(self) -> "PairedScores":
        sizes = {len(self.base), len(self.finetuned)}
        sizes |= {len(w) for w in (self.base_weights, self.finetuned_weights) if w is not None}
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError(f"paired scores need the same, non-zero number of records per list; got sizes {sizes}")
        return self

    @classmethod
    def means(cls, base: list[float], finetuned: list[float], scale: float = 1.0) -> "PairedScores":
        return cls(base=base, finetuned=finetuned, scale=scale)

    @classmethod
    def perplexity(cls, base: list[tuple[float, int]], finetuned: list[tuple[float, int]],
                   transform: Literal["identity", "exp"] = "exp") -> "PairedScores":
        """From per-record (summed token loss, tokens); transform 'identity' gives the mean token loss."""
        return cls(base=[s for s, _ in base], finetuned=[s for s, _ in finetuned],
                   base_weights=[float(n) for _, n in base], finetuned_weights=[float(n) for _, n in finetuned],
                   transform=transform)

    def __len__(self) -> int:
        return len(self.base)


def aggregate(values, weights, transform: str = "identity", scale: float = 1.0):
    """The metric of one or many resamples: numpy arrays (records last), weights None for a mean."""
    total = np.sum(values, axis=-1)
    count = np.sum(weights, axis=-1) if weights is not None else values.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mean = scale * total / count
        return np.exp(np.minimum(mean, 700.0)) if transform == "exp" else mean


def paired_means(base: dict[str, list[float]], finetuned: dict[str, list[float]],
                 scale: float = 1.0) -> dict[str, PairedScores]:
    """Paired scores of every metric both models have per-record values of (metric = mean over records)."""
    return {k: PairedScores.means(base[k], finetuned[k], scale) for k in base if k in finetuned and base[k]}


class ReleaseEvidence(BaseModel):
    """Metrics of the base and the fine-tuned model on the same records, samples, and a markdown report."""

    base_metrics: dict[str, float]
    finetuned_metrics: dict[str, float]
    samples: list[dict]
    report_markdown: str
    num_records: int
    per_record: dict[str, PairedScores] = Field(
        default_factory=dict, description="Per-record values of the metrics a gain can be measured on")

