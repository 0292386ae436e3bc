"""The approval policy: gains judged by paired-bootstrap confidence intervals over the evaluation records."""

import math

import numpy as np
import pytest

from llm_finetune.approval import check_policy, paired_bootstrap
from llm_finetune.evaluation.comparison import PairedScores, ReleaseEvidence
from llm_finetune.recipes import ApprovalPolicy


def evidence(per_record: dict[str, PairedScores]) -> ReleaseEvidence:
    from llm_finetune.evaluation.comparison import aggregate

    def metrics(which):
        return {k: float(aggregate(np.asarray(getattr(s, which)), None if getattr(s, f"{which}_weights") is None
                                   else np.asarray(getattr(s, f"{which}_weights")), s.transform, s.scale))
                for k, s in per_record.items()}

    return ReleaseEvidence(base_metrics=metrics("base"), finetuned_metrics=metrics("finetuned"), samples=[],
                           report_markdown="", num_records=len(next(iter(per_record.values()))),
                           per_record=per_record)


def noisy_pair(n: int, gain: float, noise: float, seed: int = 1) -> PairedScores:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.2, 0.4, n)
    return PairedScores.means(base.tolist(), (base + gain + rng.normal(0, noise, n)).tolist())


def test_a_clear_gain_approves_and_reports_its_interval():
    check = check_policy(ApprovalPolicy(min_metrics={"rougeL": 0.2}, min_gain_over_base={"rougeL": 0.05}),
                         evidence({"rougeL": noisy_pair(200, gain=0.1, noise=0.05)}))
    assert check.failures == []
    (interval,) = check.intervals
    assert interval.metric == "rougeL" and interval.records == 200 and interval.level == 0.95
    assert 0.05 < interval.low < interval.estimate < interval.high


def test_a_positive_mean_gain_within_the_noise_does_not_approve():
    pair = noisy_pair(20, gain=0.01, noise=0.1)
    ev = evidence({"rougeL": pair})
    assert ev.finetuned_metrics["rougeL"] > ev.base_metrics["rougeL"]  # the old point-estimate gate approved this
    check = check_policy(ApprovalPolicy(min_gain_over_base={"rougeL": 0.0}), ev)
    (failure,) = check.failures
    assert check.intervals[0].low < 0 < check.intervals[0].high
    assert failure.startswith("rougeL gain +") and "95% CI" in failure and "lower end must be above 0" in failure


def test_a_zero_gain_never_approves():
    same = [0.0] * 50
    check = check_policy(ApprovalPolicy(min_gain_over_base={"f1": 0.0}),
                         evidence({"f1": PairedScores.means(same, same, scale=100.0)}))
    assert len(check.failures) == 1 and check.intervals[0].low == check.intervals[0].high == 0.0


def test_the_interval_matches_the_normal_approximation_of_a_mean_difference():
    pair = noisy_pair(400, gain=0.02, noise=0.2, seed=3)
    diffs = np.asarray(pair.finetuned) - np.asarray(pair.base)
    half_width = 1.96 * diffs.std(ddof=1) / math.sqrt(len(diffs))
    interval = paired_bootstrap("m", pair, relative=False, level=0.95, samples=4000)
    assert interval.estimate == pytest.approx(diffs.mean())
    assert (interval.high - interval.low) / 2 == pytest.approx(half_width, rel=0.1)


def test_a_higher_level_widens_the_interval():
    pair = noisy_pair(100, gain=0.02, noise=0.1)
    narrow, wide = (paired_bootstrap("m", pair, relative=False, level=lv, samples=2000) for lv in (0.8, 0.99))
    assert wide.low < narrow.low and wide.high > narrow.high


def test_perplexity_falls_by_a_share_over_the_whole_interval():
    rng = np.random.default_rng(0)
    tokens = rng.integers(5, 40, 80)
    base = [(float(n * rng.normal(5.0, 0.3)), int(n)) for n in tokens]
    tuned = [(s * 0.9, n) for s, n in base]  # 10% lower loss on every record
    ev = evidence({"perplexity": PairedScores.perplexity(base, tuned)})
    expected = ev.finetuned_metrics["perplexity"] / ev.base_metrics["perplexity"] - 1
    check = check_policy(ApprovalPolicy(min_relative_decrease={"perplexity": 0.2}), ev)
    assert check.failures == [] and check.intervals[0].estimate == pytest.approx(expected)
    check = check_policy(ApprovalPolicy(min_relative_decrease={"perplexity": 0.9}), ev)
    assert "must fall by at least 90.00%" in check.failures[0]


def test_a_rise_is_bounded_by_the_upper_end():
    rng = np.random.default_rng(0)
    base = [(float(rng.normal(4.0, 1.0)) * 10, 10) for _ in range(60)]
    tuned = [(s + float(rng.normal(0.0, 3.0)), n) for s, n in base]  # no systematic change, noisy
    check = check_policy(ApprovalPolicy(min_relative_decrease={"perplexity": 0.0},
                                        max_relative_increase={"perplexity": 0.0}),
                         evidence({"perplexity": PairedScores.perplexity(base, tuned)}))
    assert any("may rise by at most 0.00%" in f for f in check.failures)


def test_metrics_without_per_record_values_cannot_pass_a_gain_threshold():
    ev = ReleaseEvidence(base_metrics={"rougeL": 0.1}, finetuned_metrics={"rougeL": 0.9}, samples=[],
                         report_markdown="", num_records=10)
    check = check_policy(ApprovalPolicy(min_metrics={"bleu": 0.1}, min_gain_over_base={"rougeL": 0.0}), ev)
    assert check.failures == ["bleu: not measured", "rougeL: no per-record values, so its change over base cannot be "
                              "measured with its uncertainty"]


def test_the_same_evidence_gives_the_same_interval():
    pair = noisy_pair(50, gain=0.02, noise=0.1)
    policy = ApprovalPolicy(min_gain_over_base={"m": 0.0})
    assert check_policy(policy, evidence({"m": pair})) == check_policy(policy, evidence({"m": pair}))


def test_paired_scores_refuse_unpaired_lists():
    with pytest.raises(ValueError, match="same, non-zero number of records"):
        PairedScores.means([0.1, 0.2], [0.3])
