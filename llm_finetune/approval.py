"""Approval policy checks and the decision record stored on a registered model version.

A gain is measured with its uncertainty: a paired bootstrap over the evaluation records (both models' values of
the same records resampled together) gives a confidence interval of fine-tuned minus base (or of the relative
change, for lower-is-better metrics), and a gain threshold holds only when the whole interval clears it."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from llm_finetune.evaluation.comparison import PairedScores, ReleaseEvidence, aggregate
from llm_finetune.recipes import ApprovalPolicy

BOOTSTRAP_SEED = 0  # the same evidence always gives the same interval (a re-run decides alike)


class ApprovalDecision(BaseModel):
    approved: bool
    reviewer: str
    reason: str
    automatic: bool
    decided_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


class GainInterval(BaseModel):
    """Fine-tuned vs base on one metric: the point estimate and a paired-bootstrap confidence interval."""

    metric: str
    measure: Literal["gain", "relative change"]  # fine-tuned - base, or (fine-tuned - base) / base
    estimate: float
    low: float
    high: float
    level: float
    records: int

    def text(self) -> str:
        fmt = "{:+.2%}" if self.measure == "relative change" else "{:+.4f}"
        return (f"{self.metric} {self.measure} {fmt.format(self.estimate)} ({self.level:.0%} CI "
                f"{fmt.format(self.low)} to {fmt.format(self.high)}, {self.records} records)")


class PolicyCheck(BaseModel):
    """What the policy found: the thresholds that do not hold (empty: approve) and every measured interval."""

    failures: list[str]
    intervals: list[GainInterval]


def paired_bootstrap(metric: str, scores: PairedScores, *, relative: bool, level: float, samples: int,
                     seed: int = BOOTSTRAP_SEED) -> GainInterval:
    """Percentile interval of fine-tuned minus base (or the relative change) over `samples` resamples of the
    records, each resample drawing the same records for both models."""
    rng = np.random.default_rng(seed)
    n = len(scores)
    draws = rng.integers(0, n, size=(samples, n))

    def as_array(values):
        return None if values is None else np.asarray(values, dtype=float)

    base_values, base_weights = as_array(scores.base), as_array(scores.base_weights)
    tuned_values, tuned_weights = as_array(scores.finetuned), as_array(scores.finetuned_weights)

    def metric_of(values, weights, rows):
        pick = (lambda a: a) if rows is None else (lambda a: a[rows])
        return aggregate(pick(values), None if weights is None else pick(weights), scores.transform, scores.scale)

    def change(rows):
        base = metric_of(base_values, base_weights, rows)
        tuned = metric_of(tuned_values, tuned_weights, rows)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (tuned - base) / base if relative else tuned - base

    resampled = np.nan_to_num(change(draws), nan=0.0)
    alpha = (1 - level) / 2
    low, high = np.quantile(resampled, [alpha, 1 - alpha])
    return GainInterval(metric=metric, measure="relative change" if relative else "gain",
                        estimate=float(change(None)), low=float(low), high=float(high), level=level, records=n)


def check_policy(policy: ApprovalPolicy, evidence: ReleaseEvidence) -> PolicyCheck:
    """Every threshold of the policy against the evidence; gains are judged by the ends of their intervals."""
    failures, intervals = [], []
    for metric, minimum in policy.min_metrics.items():
        value = evidence.finetuned_metrics.get(metric)
        if value is None:
            failures.append(f"{metric}: not measured")
        elif value < minimum:
            failures.append(f"{metric} = {value:.4f} < required {minimum:.4f}")

    def interval(metric: str, relative: bool) -> GainInterval | None:
        scores = evidence.per_record.get(metric)
        if scores is None:
            failures.append(f"{metric}: no per-record values, so its change over base cannot be measured with its "
                            "uncertainty")
            return None
        found = paired_bootstrap(metric, scores, relative=relative, level=policy.confidence_level,
                                 samples=policy.bootstrap_samples)
        intervals.append(found)
        return found

    for metric, min_gain in policy.min_gain_over_base.items():
        if (gain := interval(metric, relative=False)) is not None and not (gain.low > 0 and gain.low >= min_gain):
            failures.append(f"{gain.text()}: the interval's lower end must be above 0 and >= {min_gain:+.4f}")
    for metric, share in policy.min_relative_decrease.items():
        if (change := interval(metric, relative=True)) is not None and not (change.high < 0
                                                                             and -change.high >= share):
            failures.append(f"{change.text()}: must fall by at least {share:.2%} over the whole interval")
    for metric, share in policy.max_relative_increase.items():
        if (change := interval(metric, relative=True)) is not None and change.high > share:
            failures.append(f"{change.text()}: may rise by at most {share:.2%} over the whole interval")
    return PolicyCheck(failures=failures, intervals=intervals)


def policy_summary(policy: ApprovalPolicy) -> str:
    """The policy's thresholds in words, e.g. for the reason of an automatic approval."""
    level = f"{policy.confidence_level:.0%} CI"
    return ", ".join(
        [f"{k} >= {v}" for k, v in policy.min_metrics.items()]
        + [f"{k} gain over base >= {v} and > 0 ({level} lower end)" for k, v in policy.min_gain_over_base.items()]
        + [f"{k} falls by >= {v:.2%} ({level})" for k, v in policy.min_relative_decrease.items()]
        + [f"{k} rises by <= {v:.2%} ({level})" for k, v in policy.max_relative_increase.items()])


def intervals_markdown(intervals: list[GainInterval]) -> str:
    """The measured intervals as a table (for the review form, the gate's artifact and the run's report)."""
    if not intervals:
        return "No gain measured."
    lines = ["| metric | measure | estimate | CI low | CI high | level | records |", "|---|---|---|---|---|---|---|"]
    for g in intervals:
        fmt = "{:+.2%}" if g.measure == "relative change" else "{:+.4f}"
        lines.append(f"| {g.metric} | {g.measure} | {fmt.format(g.estimate)} | {fmt.format(g.low)} | "
                     f"{fmt.format(g.high)} | {g.level:.0%} | {g.records} |")
    return "\n".join(lines)
