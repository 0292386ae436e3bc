"""Comparing training arms over several seeds: mean +- std per arm, and a paired comparison of two arms seed by seed
that says whether their difference stands out from the seed-to-seed spread; as a table and a plot."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from pydantic import BaseModel

METRICS = ("accuracy", "macro_f1")


class ArmRun(BaseModel):
    """One arm trained and evaluated at one seed."""

    arm: str
    seed: int
    metrics: dict[str, float]
    base_metrics: dict[str, float]
    training_fingerprint: str | None
    reused: bool  # the training was found finished (an earlier run of the same arm and seed)


class ArmSummary(BaseModel):
    arm: str
    seeds: list[int]
    mean: dict[str, float]
    std: dict[str, float]  # sample standard deviation over seeds (0 with one seed)


class PairedComparison(BaseModel):
    """Arm b minus arm a on the same seeds, per metric."""

    a: str
    b: str
    seeds: list[int]
    differences: dict[str, list[float]]  # per metric, b - a per seed
    mean_difference: dict[str, float]
    std_difference: dict[str, float]  # spread of the paired differences across seeds
    seed_spread: dict[str, float]  # the larger of the two arms' own seed-to-seed std
    p_value: dict[str, float | None]  # paired t-test (two-sided); None with fewer than 2 seeds or no spread
    exceeds_spread: dict[str, bool]  # |mean difference| > both the differences' std and the arms' seed spread

    def verdict(self, metric: str) -> str:
        mean, spread = self.mean_difference[metric], max(self.std_difference[metric], self.seed_spread[metric])
        p = self.p_value[metric]
        p_text = f", paired t-test p = {p:.3f}" if p is not None else ""
        if self.exceeds_spread[metric]:
            better = self.b if mean > 0 else self.a
            return (f"{metric}: {better} is better by {abs(mean):.4f} (mean over {len(self.seeds)} seeds), more than "
                    f"the seed-to-seed spread {spread:.4f}{p_text}")
        return (f"{metric}: the difference {mean:+.4f} ({self.b} - {self.a}) is within the seed-to-seed spread "
                f"{spread:.4f}{p_text}: not distinguishable from seed noise with {len(self.seeds)} seeds")


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[ArmRun]) -> list[ArmSummary]:
    """Per arm, in the order arms first appear."""
    arms = list(dict.fromkeys(r.arm for r in runs))
    summaries = []
    for arm in arms:
        mine = [r for r in runs if r.arm == arm]
        summaries.append(ArmSummary(arm=arm, seeds=[r.seed for r in mine],
                                    mean={m: statistics.fmean(r.metrics[m] for r in mine) for m in METRICS},
                                    std={m: _std([r.metrics[m] for r in mine]) for m in METRICS}))
    return summaries


def paired(runs: list[ArmRun], a: str, b: str) -> PairedComparison:
    """b - a on the seeds both arms ran."""
    from scipy import stats

    by = {(r.arm, r.seed): r for r in runs}
    seeds = [r.seed for r in runs if r.arm == a and (b, r.seed) in by]
    if not seeds:
        raise ValueError(f"arms {a!r} and {b!r} share no seed")
    diffs = {m: [by[(b, s)].metrics[m] - by[(a, s)].metrics[m] for s in seeds] for m in METRICS}
    spread = {m: max(_std([by[(a, s)].metrics[m] for s in seeds]), _std([by[(b, s)].metrics[m] for s in seeds]))
              for m in METRICS}
    p_values: dict[str, float | None] = {}
    for m in METRICS:
        p = None
        if len(seeds) > 1 and _std(diffs[m]) > 0:
            p = float(stats.ttest_rel([by[(b, s)].metrics[m] for s in seeds],
                                      [by[(a, s)].metrics[m] for s in seeds]).pvalue)
        p_values[m] = None if p is None or math.isnan(p) else p
    mean = {m: statistics.fmean(diffs[m]) for m in METRICS}
    std = {m: _std(diffs[m]) for m in METRICS}
    return PairedComparison(a=a, b=b, seeds=seeds, differences=diffs, mean_difference=mean, std_difference=std,
                            seed_spread=spread, p_value=p_values,
                            exceeds_spread={m: abs(mean[m]) > max(std[m], spread[m]) for m in METRICS})


def table_rows(summaries: list[ArmSummary]) -> list[dict]:
    return [{"arm": s.arm, "seeds": len(s.seeds),
             **{m: f"{s.mean[m]:.4f} +- {s.std[m]:.4f}" for m in METRICS}} for s in summaries]


def markdown(summaries: list[ArmSummary], pair: PairedComparison | None, runs: list[ArmRun]) -> str:
    lines = ["| arm | seeds | accuracy (mean +- std) | macro-F1 (mean +- std) |", "|---|---|---|---|"]
    lines += [f"| {r['arm']} | {r['seeds']} | {r['accuracy']} | {r['macro_f1']} |" for r in table_rows(summaries)]
    lines += ["", "| arm | seed | accuracy | macro-F1 | base accuracy | reused |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.arm} | {r.seed} | {r.metrics['accuracy']:.4f} | {r.metrics['macro_f1']:.4f} | "
              f"{r.base_metrics['accuracy']:.4f} | {r.reused} |" for r in runs]
    if pair:
        lines += ["", f"### Paired: {pair.b} - {pair.a} over seeds {pair.seeds}", ""]
        lines += [f"- {pair.verdict(m)}" for m in METRICS]
    return "\n".join(lines)


def plot(summaries: list[ArmSummary], runs: list[ArmRun], path: str | Path) -> Path:
    """Mean +- std per arm (bars) with each seed's score (dots), one panel per metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], METRICS):
        xs = range(len(summaries))
        ax.bar(xs, [s.mean[metric] for s in summaries], yerr=[s.std[metric] for s in summaries], capsize=4,
               color="#9ecae1")
        for x, s in zip(xs, summaries):
            ax.plot([x] * len(s.seeds), [r.metrics[metric] for r in runs if r.arm == s.arm], "k.")
        ax.set_xticks(list(xs), [s.arm for s in summaries], rotation=20)
        ax.set_title(metric)
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
