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
    for metric, share in policy.min_relative_decrease.items():
        change = _relative_change(metric, finetuned, base)
        if change is None:
            failures.append(f"{metric} change over base: not measured")
        elif -change < share:
            failures.append(f"{metric} {base[metric]:.4f} -> {finetuned[metric]:.4f} ({change:+.2%}): needs to fall "
                            f"by at least {share:.2%}")
    for metric, share in policy.max_relative_increase.items():
        change = _relative_change(metric, finetuned, base)
        if change is None:
            failures.append(f"{metric} change over base: not measured")
        elif change > share:
            failures.append(f"{metric} {base[metric]:.4f} -> {finetuned[metric]:.4f} ({change:+.2%}): may rise by "
                            f"at most {share:.2%}")
    return failures


def policy_summary(policy: ApprovalPolicy) -> str:
    """The policy's thresholds in words, e.g. for the reason of an automatic approval."""
    return ", ".join(
        [f"{k} >= {v}" for k, v in policy.min_metrics.items()]
        + [f"{k} gain over base >= {v}" for k, v in policy.min_gain_over_base.items()]
        + [f"{k} falls by >= {v:.2%}" for k, v in policy.min_relative_decrease.items()]
        + [f"{k} rises by <= {v:.2%}" for k, v in policy.max_relative_increase.items()])


def _relative_change(metric: str, finetuned: dict[str, float], base: dict[str, float]) -> float | None:
    """(fine-tuned - base) / base; None when either is missing or the base is not positive."""
    if metric not in finetuned or metric not in base or not base[metric] > 0:
        return None
    return (finetuned[metric] - base[metric]) / base[metric]
