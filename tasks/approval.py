"""Approval gate: automatic when the policy's thresholds hold, else a paused run with a typed review form. In the
release transaction, its rollback hook moves the aliases back and rejects the package. A re-run promotes a version
whose release rolled back again, by the decision of record."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.settings import get_current_settings
from prefect.transactions import Transaction, get_transaction
from pydantic import BaseModel

from llm_finetune.approval import ApprovalDecision, PolicyCheck, check_policy, intervals_markdown, policy_summary
from llm_finetune.aws import sagemaker_client
from llm_finetune.backends.model_packages import record_package_decision, record_package_release
from llm_finetune.errors import rollback_reason
from llm_finetune.evaluation.comparison import ReleaseEvidence
from llm_finetune.recipes import ApprovalPolicy
from llm_finetune.registry.mlflow_registry import (
    ROLLED_BACK,
    RegisteredModelVersion,
    alias_version,
    promote,
    record_approval,
    record_gain_intervals,
    recorded_decision,
    release_status,
    restore_aliases,
)

POLL_INTERVAL_S = 2


class ModelApprovalInput(RunInput):
    """What a reviewer fills in on the paused run in the Prefect UI."""

    approve: bool = False
    reviewer: str
    reason: str = ""


def approval_evidence(version: RegisteredModelVersion, evidence: ReleaseEvidence, check: PolicyCheck) -> str:
    unmet = "\n".join(f"- {f}" for f in check.failures)
    return (
        f"# Review `{version.name}` version {version.version}\n\n"
        f"Automatic approval did not apply:\n{unmet}\n\n"
        f"## Gain over base (paired bootstrap over the evaluation records)\n\n{intervals_markdown(check.intervals)}"
        f"\n\n{evidence.report_markdown}"
    )


class _Release(BaseModel):
    """What the gate's rollback hook needs: whom it approved, and the aliases it moved."""

    tracking_uri: str
    version: RegisteredModelVersion
    approved: bool
    alias: str
    aliases_before: dict[str, str | None] | None  # set when this run moved the aliases


@task(name="approval-gate")
def approval_gate(
    policy: ApprovalPolicy,
    evidence: ReleaseEvidence,
    version: RegisteredModelVersion,
    tracking_uri: str,
    rejections: list[str] | None = None,
) -> ApprovalDecision:
    """Decide, record the decision on the registered version (and its SageMaker model package), and return it.
    Nothing is deployed without 'approved'.

    `rejections` (e.g. the probe gate's findings) reject the version outright, with them as the reason."""
    logger = get_run_logger()
    aliases = [a for a in (policy.alias, policy.previous_alias) if a]
    before = {a: alias_version(tracking_uri, version.name, a) for a in aliases}
    recorded = recorded_decision(tracking_uri, version.name, version.version)
    if recorded is not None:  # a re-run of a registered model keeps the decision made on it
        logger.info("version %s was already %s by %s on %s", version.version,
                    "approved" if recorded.approved else "rejected", recorded.reviewer, recorded.decided_at)
        decision = recorded
        if decision.approved and release_status(tracking_uri, version.name, version.version) == ROLLED_BACK:
            promote(tracking_uri, version.name, version.version, policy.alias, previous_alias=policy.previous_alias)
            logger.info("version %s: its last release rolled back; %s moves to it again", version.version,
                        policy.alias)
    else:
        check = check_policy(policy, evidence)
        create_markdown_artifact(key="approval-gain-intervals", markdown=intervals_markdown(check.intervals)
                                 + "".join(f"\n- {f}" for f in check.failures),
                                 description="Fine-tuned vs base with confidence intervals, as the gate judged them")
        record_gain_intervals(tracking_uri, version, check.intervals)
        decision = _decide(policy, check, evidence, version, rejections)
        decision = record_approval(tracking_uri, version.name, version.version, decision, policy.alias,
                                   previous_alias=policy.previous_alias)
        logger.info("version %s %s by %s", version.version, "approved" if decision.approved else "rejected",
                    decision.reviewer)
    if version.model_package_arn:  # MLflow holds the decision of record; the package mirrors it
        status = record_package_decision(sagemaker_client(), version.model_package_arn, decision)
        logger.info("model package %s is %s", version.model_package_arn, status)
    now = alias_version(tracking_uri, version.name, policy.alias)
    promoted = now == version.version and before[policy.alias] != version.version
    get_transaction().set("release", _Release(tracking_uri=tracking_uri, version=version, approved=decision.approved,
                                              alias=policy.alias, aliases_before=before if promoted else None))
    return decision


@approval_gate.on_rollback
def _undo_promotion(txn: Transaction) -> None:
    """The aliases back where they were (the previous champion, or none); the package Rejected with the reason. (The
    version's own rolled_back tag is register-model's hook.)"""
    release: _Release = txn.get("release")
    version = release.version
    if release.aliases_before is not None:
        restore_aliases(release.tracking_uri, version.name, version.version, release.alias, release.aliases_before)
    if release.approved and version.model_package_arn:
        record_package_release(sagemaker_client(), version.model_package_arn, ROLLED_BACK, rollback_reason())


def _decide(policy: ApprovalPolicy, check: PolicyCheck, evidence: ReleaseEvidence, version: RegisteredModelVersion,
            rejections: list[str] | None = None) -> ApprovalDecision:
    """By the policy's thresholds, else by a reviewer on the paused run (rejected when nobody can review it)."""
    logger = get_run_logger()
    failures = check.failures
    if rejections:
        decision = ApprovalDecision(approved=False, reviewer="policy", automatic=True, reason="; ".join(rejections))
    elif not failures:
        decision = ApprovalDecision(
            approved=True, reviewer="policy", automatic=True,
            reason="all thresholds hold: " + policy_summary(policy) + "".join(
                f"; {g.text()}" for g in check.intervals),
        )
    elif not policy.manual_review:
        decision = ApprovalDecision(approved=False, reviewer="policy", automatic=True,
                                    reason="thresholds not met: " + "; ".join(failures))
    elif get_current_settings().api.url is None:
        # Ephemeral Prefect (no server): nobody can open this run to review it, so do not wait for an hour.
        decision = ApprovalDecision(
            approved=False, reviewer="none", automatic=True,
            reason="manual review needed (" + "; ".join(failures) + ") but this run has no Prefect API a reviewer "
                   "can reach: run it with PREFECT_API_URL set to a Prefect server",
        )
    else:
        logger.info("waiting for a reviewer: %s", "; ".join(failures))
        form = ModelApprovalInput.with_initial_data(
            description=approval_evidence(version, evidence, check), approve=False
        )
        try:
            answer = pause_flow_run(wait_for_input=form, timeout=policy.manual_timeout_s, poll_interval=POLL_INTERVAL_S)
        except FlowPauseTimeout as e:  # never resumed: the version stays undeployable
            decision = ApprovalDecision(
                approved=False, reviewer="timeout", automatic=True, reason=f"no review in time: {e}"
            )
        else:
            decision = ApprovalDecision(
                approved=answer.approve, reviewer=answer.reviewer, automatic=False,
                reason=answer.reason or "; ".join(failures),
            )
    return decision
