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
        metrics = {"rouge1": value, "rouge2": value / 2, "rougeL": value, "rougeLsum": value}
        return SummarizationEval(model=name, metrics=metrics, predictions=["x"], num_records=1, seconds=1.0,
                                 records_per_second=1.0)

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
    assert decision.reason == "all thresholds hold: rougeL >= 0.2, rougeL gain over base >= 0.0"
    client = mlflow.MlflowClient(uri)
    assert str(client.get_model_version_by_alias("gated", "champion").version) == version.version


def test_without_a_prefect_server_unmet_thresholds_reject_at_once(registered):
    uri, version = registered
    decision = gate_flow(ApprovalPolicy(min_metrics={"rougeL": 0.5}), comparison(0.1, 0.3), version, uri)
    assert not decision.approved and decision.reviewer == "none"
    assert "rougeL = 0.3000 < required 0.5000" in decision.reason and "PREFECT_API_URL" in decision.reason
    tags = mlflow.MlflowClient(uri).get_model_version("gated", version.version).tags
    assert tags["approval_status"] == "rejected"
    assert mlflow.MlflowClient(uri).get_registered_model("gated").aliases == {}
