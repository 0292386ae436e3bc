"""Arms over seeds: mean +- std, and whether a paired difference stands out from the seed-to-seed spread."""

import pytest

from llm_finetune.evaluation.arms import ArmRun, paired, summarize


def run(arm, seed, accuracy):
    return ArmRun(arm=arm, seed=seed, metrics={"accuracy": accuracy, "macro_f1": accuracy - 0.01},
                  base_metrics={"accuracy": 0.5, "macro_f1": 0.4}, training_fingerprint=None, reused=False)


def test_consistent_gain_exceeds_the_spread_and_noise_does_not():
    runs = [run("a", s, acc) for s, acc in ((1, 0.70), (2, 0.74), (3, 0.72))]
    runs += [run("b", s, acc + 0.05) for s, acc in ((1, 0.70), (2, 0.75), (3, 0.71))]  # +0.05 +0.06 +0.04
    summary = {s.arm: s for s in summarize(runs)}
    assert summary["a"].mean["accuracy"] == pytest.approx(0.72) and summary["a"].std["accuracy"] == pytest.approx(0.02)
    pair = paired(runs, "a", "b")
    assert pair.differences["accuracy"] == pytest.approx([0.05, 0.06, 0.04])
    assert pair.exceeds_spread["accuracy"] and pair.p_value["accuracy"] < 0.05
    assert pair.verdict("accuracy").startswith("accuracy: b is better by 0.0500")

    noisy = [run("a", s, acc) for s, acc in ((1, 0.70), (2, 0.78), (3, 0.66))]
    noisy += [run("b", s, acc) for s, acc in ((1, 0.74), (2, 0.70), (3, 0.72))]
    pair = paired(noisy, "a", "b")
    assert not pair.exceeds_spread["accuracy"] and "within the seed-to-seed spread" in pair.verdict("accuracy")


def test_pairs_need_shared_seeds():
    with pytest.raises(ValueError, match="share no seed"):
        paired([run("a", 1, 0.7), run("b", 2, 0.7)], "a", "b")
