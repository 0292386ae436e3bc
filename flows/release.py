"""The release path every use case shares: register -> (probe gate, when the recipe sets one) -> approve -> deploy ->
test the endpoint -> stop.

A nested flow: each use-case flow calls `release_model` after training and evaluation. The recipe picks where:
`registry.sagemaker` mirrors the MLflow version as a SageMaker model package (the approval is recorded on both),
`endpoint.target: sagemaker` serves the approved package on a SageMaker endpoint instead of a local process (in
JumpStart's inference container when `sagemaker.jumpstart` is set).

The steps from registering to the endpoint test run in one Prefect transaction: when one fails, the steps before it
are undone by their tasks' rollback hooks. The champion alias (and `approval.previous_alias`) go back to where they
were (removed if there was none), a SageMaker endpoint back to the config it served (deleted if this release created
it), a local endpoint is stopped, an approved model package is set Rejected with the reason, and the version is kept
with `release_status=rolled_back` and `release_reason`. The run then fails with ReleaseRolledBackError, one line. A
re-run of the same version releases it again (its recorded approval stands); a committed release is tagged
`release_status=released`.
"""

from __future__ import annotations

from prefect import flow
from prefect.transactions import transaction
from pydantic import BaseModel, Field

from llm_finetune.approval import ApprovalDecision
from llm_finetune.backends.sagemaker_endpoint import SageMakerEndpointHandle
from llm_finetune.errors import ReleaseRolledBackError, one_line
from llm_finetune.evaluation.comparison import ReleaseEvidence
from llm_finetune.kinds import EndpointTestCase, ServedKind
from llm_finetune.probes.results import ProbeComparison
from llm_finetune.recipes import RecipeBase
from llm_finetune.registry.mlflow_registry import RegisteredModelVersion
from llm_finetune.serving.endpoint import EndpointHandle
from llm_finetune.training.job import TrainingResult
from tasks.approval import approval_gate
from tasks.endpoint import deploy_local_endpoint, deploy_sagemaker_endpoint, stop_endpoint
from tasks.inference import EndpointTestReport, test_endpoint_inference
from tasks.probes import probe_gate
from tasks.registry import record_released, register_model, register_sagemaker_model_package


class ReleaseOutcome(BaseModel):
    version: RegisteredModelVersion
    decision: ApprovalDecision
    endpoint_test: EndpointTestReport | None = None
    running_endpoint: EndpointHandle | SageMakerEndpointHandle | None = Field(
        None, description="Set when endpoint.keep_running is true")
    probe_gate: ProbeComparison | None = Field(None, description="Set when the recipe sets probe_gate")


@flow(name="release-model")
def release_model(
    recipe: RecipeBase,
    base_model: str,
    dataset_fingerprint: str,
    training: TrainingResult,
    evidence: ReleaseEvidence,
    test_cases: list[EndpointTestCase],
    kind: ServedKind,
) -> ReleaseOutcome:
    try:
        with transaction():  # a failing step runs every earlier step's rollback hook (see the module docstring)
            version = register_model(recipe, base_model, dataset_fingerprint, training, evidence)
            if recipe.registry.sagemaker is not None:
                version = register_sagemaker_model_package(recipe.registry.sagemaker, version, recipe.tracking_uri(),
                                                           training, evidence)
            probes = None
            if recipe.probe_gate is not None:  # off by default
                probes = probe_gate(recipe.probe_gate, base_model, training.model_dir, recipe.work_dir)
            rejections = [f"probe gate: {failure}" for failure in probes.failures] if probes else []
            decision = approval_gate(recipe.approval, evidence, version, recipe.tracking_uri(), rejections)
            outcome = ReleaseOutcome(version=version, decision=decision, probe_gate=probes)
            if not decision.approved:
                return outcome
            if recipe.endpoint.target == "sagemaker":
                jumpstart = recipe.sagemaker.jumpstart if recipe.sagemaker is not None else None
                endpoint = deploy_sagemaker_endpoint(version, recipe.endpoint.sagemaker, jumpstart)
            else:
                endpoint = deploy_local_endpoint(version, recipe.tracking_uri(), recipe.endpoint, recipe.work_dir)
            outcome.endpoint_test = test_endpoint_inference(endpoint, test_cases, recipe.endpoint, kind)
    except Exception as e:  # the Prefect UI shows this one line as the failed run's reason
        raise ReleaseRolledBackError(f"release of '{recipe.registry.model_name}' rolled back: {one_line(e)}") from e
    record_released(version, recipe.tracking_uri())
    if recipe.endpoint.keep_running:  # an endpoint is left up only when asked for and only when it passed its test
        outcome.running_endpoint = endpoint
    else:
        stop_endpoint(endpoint)
    return outcome
