"""The whole DialogSum -> FLAN-T5 flow on a tiny model, against a temporary Prefect server."""

import json
import threading
import time

import mlflow
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.exceptions import PrefectHTTPStatusError
from prefect.flow_runs import resume_flow_run

from flows.dialogsum_flan_t5 import dialogsum_flan_t5
from llm_finetune.errors import ApprovalRequiredError, DataValidationError
from llm_finetune.registry.mlflow_registry import download_approved_model
from llm_finetune.serving.endpoint import EndpointClient, stop_local_endpoint
from tests.conftest import seed_work_dir, small_recipe

pytestmark = pytest.mark.usefixtures("prefect_server")  # the process's temporary Prefect server (conftest)


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory, small_trained_work_dir):
    """The small recipe's model is trained once per session: the flow reuses that run (training is tested apart)."""
    return seed_work_dir(tmp_path_factory.mktemp("flow"), small_trained_work_dir)


def test_end_to_end_auto_approved_and_served(work_dir):
    recipe = small_recipe(work_dir)
    state = dialogsum_flan_t5(recipe=recipe, return_state=True)
    outcome = state.result()

    assert outcome.decision.approved and outcome.decision.automatic
    assert outcome.metrics["finetuned"]["rougeL"] >= 0.05 > outcome.metrics["base"]["rougeL"]

    client = mlflow.MlflowClient(recipe.tracking_uri())
    champion = client.get_model_version_by_alias(recipe.registry.model_name, "champion")
    assert str(champion.version) == outcome.version.version
    assert champion.tags["approval_status"] == "approved" and champion.tags["approval_reviewer"] == "policy"
    run = client.get_run(outcome.version.run_id)
    assert run.data.metrics["finetuned_rougeL"] == pytest.approx(outcome.metrics["finetuned"]["rougeL"])
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 6  # 60 steps, logged every 10

    report = outcome.endpoint_test
    assert report.num_requests == 3 and all(r["output"] for r in report.results)
    assert 0 < report.latency_p50_ms <= report.latency_p95_ms
    assert not EndpointClient(report.url).ping()  # the flow stopped its endpoint

    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as prefect:  # the flow's own artifacts and its nested release flow's
        nested = prefect.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])))
        assert len(nested) == 1  # release-model
        artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id, *(r.id for r in nested)])))
    by_key = {a.key: a for a in artifacts}
    assert {"summarization-dataset", "training-progress", "training-loss-curve", "rouge-base-vs-finetuned",
            "sample-summaries", "endpoint-inference-test"} <= set(by_key)
    assert by_key["training-progress"].type == "progress" and float(by_key["training-progress"].data) == 100.0
    assert by_key["training-progress"].description == "step 60 / 60"
    rouge_rows = json.loads(by_key["rouge-base-vs-finetuned"].data)
    assert [r["metric"] for r in rouge_rows] == ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    assert f"p50 {report.latency_p50_ms:.1f} ms" in by_key["endpoint-inference-test"].data

    # Re-running the unchanged recipe returns the registered version and its recorded decision, adds no version.
    again = dialogsum_flan_t5(recipe=recipe)
    assert again.version.reused and again.version.version == outcome.version.version
    assert again.decision == outcome.decision and again.metrics == outcome.metrics
    assert len(client.search_model_versions(f"name = '{recipe.registry.model_name}'")) == 1
    assert again.endpoint_test.num_requests == 3


def _review(decision: dict, seen: dict, timeout_s: float = 300) -> None:
    """Play the reviewer: wait for the paused run, read the evidence form, answer it."""
    paused = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_run_filter=paused)
            keyset = runs[0].state.state_details.run_input_keyset if runs else None
            if keyset:
                try:
                    seen["description"] = client.read_flow_run_input(runs[0].id, keyset["description"])
                except PrefectHTTPStatusError as e:  # paused, but its form is not stored yet
                    if e.response.status_code != 404:
                        raise
                else:
                    resume_flow_run(runs[0].id, run_input=decision)
                    return
            time.sleep(0.5)


def test_reviewer_denial_blocks_deployment(work_dir):
    # Same trained model as above, registered under another name: a version of its own, awaiting its own review.
    recipe = small_recipe(work_dir, "approval.min_metrics.rougeL=0.99", "approval.manual_timeout_s=600",
                          "registry.model_name=denied")
    seen: dict = {}
    reviewer = threading.Thread(target=_review, args=({"approve": False, "reviewer": "qa", "reason": "too weak"}, seen))
    reviewer.start()
    outcome = dialogsum_flan_t5(recipe=recipe)
    reviewer.join()

    assert "rougeL = " in seen["description"] and "< required 0.9900" in seen["description"]
    assert "| metric | base | fine-tuned | gain |" in seen["description"]
    assert not outcome.decision.approved and outcome.decision.reviewer == "qa"
    assert outcome.endpoint_test is None
    version = mlflow.MlflowClient(recipe.tracking_uri()).get_model_version(recipe.registry.model_name,
                                                                           outcome.version.version)
    assert version.tags["approval_status"] == "rejected" and version.tags["approval_reason"] == "too weak"
    assert not (work_dir / "endpoints" / f"{recipe.registry.model_name}-v{outcome.version.version}").exists()
    with pytest.raises(ApprovalRequiredError):
        download_approved_model(recipe.tracking_uri(), recipe.registry.model_name, outcome.version.version,
                                work_dir / "attempt")


def test_reviewer_approval_deploys_and_endpoint_can_stay_up(work_dir):
    recipe = small_recipe(work_dir, "approval.min_metrics.rougeL=0.99", "approval.manual_timeout_s=600",
                          "endpoint.keep_running=true", "registry.model_name=reviewed")
    reviewer = threading.Thread(target=_review, args=({"approve": True, "reviewer": "lead", "reason": "ok"}, {}))
    reviewer.start()
    outcome = dialogsum_flan_t5(recipe=recipe)
    reviewer.join()
    assert outcome.decision.approved and not outcome.decision.automatic and outcome.decision.reviewer == "lead"
    assert outcome.endpoint_test is not None and outcome.endpoint_test.num_requests == 3
    try:
        assert EndpointClient(outcome.running_endpoint.url).ping()
    finally:
        stop_local_endpoint(outcome.running_endpoint)


def test_bad_data_fails_before_any_model_work(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"fname": "t0", "dialogue": "#Person1#: Hi."}\n')
    recipe = small_recipe(tmp_path / "work", f"data.train_uri={bad}")
    with pytest.raises(DataValidationError, match=rf"{bad}, line 1, field 'summary': missing"):
        dialogsum_flan_t5(recipe=recipe)
    work = tmp_path / "work"
    assert not (work / "base-models").exists() and not (work / "runs").exists()


def test_end_to_end_with_sagemaker_preparation_and_training(moto_endpoint, tmp_path):
    """backend: sagemaker for both jobs, on the moto stand-in: the contract runner prepares the data and trains."""
    from llm_finetune.backends import s3files
    from llm_finetune.backends.sagemaker import S3Layout, clients_for
    from llm_finetune.data.summarization import prepare_summarization_dataset
    from tests.sagemaker_helpers import jobs_overrides, sdk_table_images

    recipe = small_recipe(tmp_path, "training.backend=sagemaker", "data.preparation_backend=sagemaker",
                          *jobs_overrides(moto_endpoint))
    state = dialogsum_flan_t5(recipe=recipe, return_state=True)
    outcome = state.result()

    assert outcome.decision.approved and outcome.endpoint_test.num_requests == 3
    assert outcome.metrics["finetuned"]["rougeL"] >= 0.05 > outcome.metrics["base"]["rougeL"]
    run = mlflow.MlflowClient(recipe.tracking_uri()).get_run(outcome.version.run_id)
    assert run.data.params["training.backend"] == "sagemaker"

    # Both jobs ran through the SageMaker API and left their outputs in S3.
    clients = clients_for(recipe.sagemaker)
    trained = clients.sagemaker.list_training_jobs(NameContains="llmft-tr-")["TrainingJobSummaries"]
    prepared = clients.sagemaker.list_processing_jobs(NameContains="llmft-pr-")["ProcessingJobSummaries"]
    assert trained and prepared
    keys = s3files.list_keys(clients.s3, S3Layout(recipe.sagemaker).base)
    assert any(k.endswith("/output/model.tar.gz") for k in keys)
    assert any("/processing/" in k and k.endswith("/prepared.json") for k in keys)

    # Each job's image is one the SDK's tables give for its region and instance type: ml.m5 processing gets a CPU one.
    layout, sm = S3Layout(recipe.sagemaker), clients.sagemaker
    jobs = [sm.describe_processing_job(ProcessingJobName=j["ProcessingJobName"]) for j in prepared]
    (processing,) = [j for j in jobs if j["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"].startswith(
        layout.base + "/")]
    jobs = [sm.describe_training_job(TrainingJobName=j["TrainingJobName"]) for j in trained]
    (training,) = [j for j in jobs if j["OutputDataConfig"]["S3OutputPath"] == layout.training_output]
    image = processing["AppSpecification"]["ImageUri"]
    assert image in sdk_table_images("us-east-1", "ml.m5.xlarge") and "-cpu-" in image
    assert training["AlgorithmSpecification"]["TrainingImage"] in sdk_table_images("us-east-1", "ml.g4dn.xlarge")

    # The processing job tokenized exactly what the local step does.
    from datasets import load_from_disk

    from llm_finetune.data.shapes import load_data

    validated = load_data(recipe.data, tmp_path)
    base = next((tmp_path / "base-models").iterdir())
    local = prepare_summarization_dataset(recipe.data.model_copy(update={"preparation_backend": "local"}), validated,
                                          str(base), tmp_path / "local-datasets")
    remote = next(p for p in (tmp_path / "datasets").iterdir() if p.name == local.fingerprint)
    for split in ("train", "validation"):
        assert load_from_disk(str(remote / "dataset"))[split].to_list() == load_from_disk(local.path)[split].to_list()

    with get_client(sync_client=True) as prefect:
        artifacts = prefect.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    costs = {a.key: a.data for a in artifacts if a.key and a.key.startswith("sagemaker-")}
    assert set(costs) == {"sagemaker-training-cost", "sagemaker-processing-cost"}
    assert "ml.g4dn.xlarge" in costs["sagemaker-training-cost"]
