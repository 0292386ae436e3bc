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


def test_relative_thresholds_for_lower_is_better_metrics():
    policy = ApprovalPolicy(min_metrics={}, min_relative_decrease={"perplexity_in_domain": 0.1},
                            max_relative_increase={"perplexity_out_of_domain": 0.05})
    champion = {"perplexity_in_domain": 100.0, "perplexity_out_of_domain": 200.0}
    assert threshold_failures(policy, {"perplexity_in_domain": 90.0, "perplexity_out_of_domain": 210.0},
                              champion) == []
    assert threshold_failures(policy, {"perplexity_in_domain": 95.0, "perplexity_out_of_domain": 211.0}, champion) == [
        "perplexity_in_domain 100.0000 -> 95.0000 (-5.00%): needs to fall by at least 10.00%",
        "perplexity_out_of_domain 200.0000 -> 211.0000 (+5.50%): may rise by at most 5.00%"]
    assert threshold_failures(policy, {"perplexity_in_domain": 80.0}, champion) == [
        "perplexity_out_of_domain change over base: not measured"]
