"""The shared release subflow with the SageMaker choices of a recipe: model package mirror, approval on both
registries, a SageMaker endpoint tested through sagemaker-runtime, deleted at the end (moto + stand-in gaps)."""

import mlflow
import pytest
from botocore.exceptions import ClientError

from llm_finetune.aws import sagemaker_client
from tests.release_helpers import GATE_PASSES, release, sagemaker_recipe

pytestmark = pytest.mark.usefixtures("prefect_server")  # the process's temporary Prefect server (conftest)


def test_approved_version_served_on_sagemaker_and_deleted(tmp_path, moto_endpoint, sagemaker_stand_in,
                                                          trained_tiny_model):
    recipe = sagemaker_recipe(tmp_path, moto_endpoint, *GATE_PASSES)
    outcome = release(recipe, trained_tiny_model)
    sm = sagemaker_client()

    arn = outcome.version.model_package_arn
    assert arn and outcome.decision.approved and outcome.decision.reviewer == "policy"
    package = sm.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == "Approved"
    assert package["ApprovalDescription"] == f"policy: {outcome.decision.reason}"
    tags = mlflow.MlflowClient(recipe.tracking_uri()).get_model_version(recipe.registry.model_name,
                                                                        outcome.version.version).tags
    assert tags["sagemaker_model_package_arn"] == arn and tags["approval_status"] == "approved"

    report = outcome.endpoint_test
    assert report.url.startswith("arn:aws:sagemaker:") and report.url.endswith(f"endpoint/{recipe.registry.model_name}")
    assert report.num_requests == 3 and all(r["output"] for r in report.results)
    assert outcome.running_endpoint is None
    with pytest.raises(ClientError, match="Could not find endpoint"):  # deleted on teardown
        sm.describe_endpoint(EndpointName=recipe.registry.model_name)


def test_unreviewed_version_rejected_on_both_registries_and_not_deployed(tmp_path, moto_endpoint,
                                                                        sagemaker_stand_in, trained_tiny_model):
    recipe = sagemaker_recipe(tmp_path, moto_endpoint, "approval.min_metrics.rougeL=0.99",
                              "approval.manual_timeout_s=1")
    outcome = release(recipe, trained_tiny_model)
    assert not outcome.decision.approved and outcome.decision.reviewer == "timeout"
    assert outcome.endpoint_test is None
    sm = sagemaker_client()
    package = sm.describe_model_package(ModelPackageName=outcome.version.model_package_arn)
    assert package["ModelApprovalStatus"] == "Rejected"
    assert package["ApprovalDescription"].startswith("timeout: no review in time")
    assert not [e for e in sm.list_endpoints()["Endpoints"] if e["EndpointName"] == recipe.registry.model_name]
