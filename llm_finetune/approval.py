"""Approval policy checks and the decision record stored on a registered model version."""

from __future__ import annotations

from datetime import datetime, timezone

from pydantic import BaseModel, Field

from llm_finetune.recipes import ApprovalPolicy


class ApprovalDecision(BaseModel):
    approved: bool
    reviewer: str
    reason: str
    automatic: bool
    decided_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


def threshold_failures(policy: ApprovalPolicy, finetuned: dict[str, float], base: dict[str, float]) -> list[str]:
    """Human-readable list of the thresholds that do not hold (empty: approve automatically)."""
    failures = []
    for metric, minimum in policy.min_metrics.items():
        value = finetuned.get(metric)
        if value is None:
            failures.append(f"{metric}: not measured")
        elif value < minimum:
            failures.append(f"{metric} = {value:.4f} < required {minimum:.4f}")
    for metric, min_gain in policy.min_gain_over_base.items():
        if metric not in finetuned or metric not in base:
            failures.append(f"{metric} gain over base: not measured")
            continue
        gain = finetuned[metric] - base[metric]
        if gain < min_gain:
            failures.append(f"{metric} gain over base = {gain:+.4f} < required {min_gain:+.4f}")
    return failures
