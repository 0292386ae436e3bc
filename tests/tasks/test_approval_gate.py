"""The approval gate in an ephemeral (server-less) Prefect run, with a real registered version."""

import mlflow
import pytest
from prefect import flow

from llm_finetune.evaluation.comparison import ReleaseEvidence
from llm_finetune.evaluation.rouge import SummarizationComparison, SummarizationEval
from llm_finetune.recipes import ApprovalPolicy
from llm_finetune.registry.mlflow_registry import log_and_register
from tasks.approval import approval_gate


def comparison(base_rouge_l: float, tuned_rouge_l: float) -> ReleaseEvidence:
    def run(name, value):
        per_record = [value + d for d in (-0.02, -0.01, 0.0, 0.01, 0.02)] * 4  # 20 records around `value`
        metrics = {"rouge1": value, "rouge2": value / 2, "rougeL": value, "rougeLsum": value}
        return SummarizationEval(model=name, metrics=metrics, per_record={"rougeL": per_record},
                                 predictions=["x"] * 20, num_records=20, seconds=1.0, records_per_second=1.0)

    return SummarizationComparison(base=run("base", base_rouge_l), finetuned=run("tuned", tuned_rouge_l),
                                   samples=[]).evidence()


@flow
def gate_flow(policy, comp, version, uri):
    return approval_gate(policy, comp, version, uri)


@pytest.fixture()
def registered(trained_tiny_model, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    version = log_and_register(uri, "exp", "gated", trained_tiny_model["finetuned"], {}, {}, [], {}, [], "fp")
    return uri, version


def test_thresholds_met_approve_and_move_alias(registered):
    uri, version = registered
    policy = ApprovalPolicy(min_metrics={"rougeL": 0.2}, min_gain_over_base={"rougeL": 0.0})
    decision = gate_flow(policy, comparison(0.1, 0.3), version, uri)
    assert decision.approved and decision.automatic and decision.reviewer == "policy"
    assert decision.reason.startswith("all thresholds hold: rougeL >= 0.2, rougeL gain over base >= 0.0 and > 0 "
                                      "(95% CI lower end); rougeL gain +0.2000 (95% CI +0.")
    tags = mlflow.MlflowClient(uri).get_model_version("gated", version.version).tags
    assert tags["gain_intervals"].startswith("rougeL gain +0.2000 (95% CI")
    run = mlflow.MlflowClient(uri).get_run(version.run_id)
    assert 0 < run.data.metrics["rougeL_gain_ci_low"] <= 0.2 <= run.data.metrics["rougeL_gain_ci_high"]
    client = mlflow.MlflowClient(uri)
    assert str(client.get_model_version_by_alias("gated", "champion").version) == version.version


def test_without_a_prefect_server_unmet_thresholds_reject_at_once(registered):
    uri, version = registered
    policy = ApprovalPolicy(min_metrics={"rougeL": 0.5}, min_gain_over_base={"rougeL": 0.0})
    decision = gate_flow(policy, comparison(0.1, 0.3), version, uri)
    assert not decision.approved and decision.reviewer == "none"
    assert "rougeL = 0.3000 < required 0.5000" in decision.reason and "PREFECT_API_URL" in decision.reason
    tags = mlflow.MlflowClient(uri).get_model_version("gated", version.version).tags
    assert tags["approval_status"] == "rejected"
    assert mlflow.MlflowClient(uri).get_registered_model("gated").aliases == {}


def test_an_equal_model_is_not_approved(registered):
    uri, version = registered
    policy = ApprovalPolicy(min_gain_over_base={"rougeL": 0.0}, manual_review=False)
    decision = gate_flow(policy, comparison(0.3, 0.3), version, uri)
    assert not decision.approved and "lower end must be above 0" in decision.reason
    assert mlflow.MlflowClient(uri).get_registered_model("gated").aliases == {}
