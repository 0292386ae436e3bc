"""The shared release subflow with the SageMaker choices of a recipe: model package mirror, approval on both
registries, a SageMaker endpoint tested through sagemaker-runtime, deleted at the end (moto + stand-in gaps)."""

import mlflow
import pytest
from botocore.exceptions import ClientError
from prefect.testing.utilities import prefect_test_harness

from flows.release import release_model
from llm_finetune.aws import sagemaker_client
from llm_finetune.data.summarization import summarization_test_cases
from llm_finetune.evaluation.comparison import ReleaseEvidence
from tests.conftest import small_recipe
from tests.sagemaker_helpers import HF_INFERENCE_IMAGE, ROLE_ARN, package_spec, unique

EVIDENCE = ReleaseEvidence(base_metrics={"rougeL": 0.01}, finetuned_metrics={"rougeL": 0.1}, samples=[],
                           report_markdown="| metric | base | fine-tuned | gain |", num_records=3)


@pytest.fixture(scope="module", autouse=True)
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


def sagemaker_recipe(work_dir, moto_endpoint, *overrides):
    bucket_prefix = package_spec(moto_endpoint).s3_prefix
    name = unique("released")
    return small_recipe(
        work_dir, f"registry.model_name={name}",
        f"registry.sagemaker={{model_package_group: {name}, s3_prefix: '{bucket_prefix}', "
        f"image_uri: '{HF_INFERENCE_IMAGE}', inference_instance_types: [ml.g4dn.xlarge]}}",
        "endpoint.target=sagemaker",
        f"endpoint.sagemaker={{role_arn: '{ROLE_ARN}', instance_type: ml.g4dn.xlarge, poll_interval_s: 0.2}}",
        *overrides,
    )


def release(recipe, trained):
    cases = summarization_test_cases(trained["validated"], recipe.data, recipe.endpoint.num_test_records)
    return release_model(recipe, trained["base"], "data-fp", trained["result"], EVIDENCE, cases,
                         kind="text2text-generation")


def test_approved_version_served_on_sagemaker_and_deleted(tmp_path, moto_endpoint, sagemaker_stand_in,
                                                          trained_tiny_model):
    # rougeL 0.1 clears min_metrics; EVIDENCE has no per-record values for a gain interval, and a release-plumbing
    # test never pauses for a reviewer.
    recipe = sagemaker_recipe(tmp_path, moto_endpoint, "approval.min_gain_over_base={}", "approval.require_gain=false",
                              "approval.manual_review=false")
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
