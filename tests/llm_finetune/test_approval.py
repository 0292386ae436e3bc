from llm_finetune.approval import threshold_failures
from llm_finetune.recipes import ApprovalPolicy


def test_thresholds_hold():
    policy = ApprovalPolicy(min_metrics={"rougeL": 0.2}, min_gain_over_base={"rougeL": 0.05})
    assert threshold_failures(policy, {"rougeL": 0.25}, {"rougeL": 0.1}) == []


def test_each_failed_threshold_is_listed():
    policy = ApprovalPolicy(min_metrics={"rougeL": 0.2, "rouge1": 0.3}, min_gain_over_base={"rougeL": 0.05})
    failures = threshold_failures(policy, {"rougeL": 0.12, "rouge1": 0.4}, {"rougeL": 0.1})
    assert failures == ["rougeL = 0.1200 < required 0.2000", "rougeL gain over base = +0.0200 < required +0.0500"]


def test_unmeasured_metric_fails():
    policy = ApprovalPolicy(min_metrics={"bleu": 0.1}, min_gain_over_base={})
    assert threshold_failures(policy, {"rougeL": 0.9}, {}) == ["bleu: not measured"]
