"""Asking a suite of a chat model, the recorded answers with their check results, pass rates per
check type x variant x model, the comparison the release gate makes, and the chart."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import get_args

import numpy as np
from pydantic import BaseModel

from llm_finetune.fingerprint import build_once, fingerprint
from llm_finetune.probes.chat_models import ChatModel, ProbeTarget, answer_all, open_chat_model
from llm_finetune.probes.checks import CheckOutcome
from llm_finetune.probes.suite import ProbeSuite, conversation
from llm_finetune.recipes.base import ProbeSuiteSpec, ProbeVariant

OVERALL = "all"  # the check-type / variant label of a rate over every check


class ProbeAnswer(BaseModel):
    model: str
    prompt_id: str
    variant: ProbeVariant
    messages: list[dict[str, str]]
    answer: str
    checks: list[CheckOutcome]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


class ProbeRun(BaseModel):
    model: str
    suite: str
    answers: list[ProbeAnswer]
    seconds: float


def run_probes(model: ChatModel, suite: ProbeSuite, spec: ProbeSuiteSpec) -> ProbeRun:
    """Every prompt in every variant, answered in one batched pass, each answer checked."""
    suite = suite.first(spec.max_prompts)
    asked = [(p, v, conversation(suite, p, v)) for p in suite.prompts for v in spec.variants]
    start = time.perf_counter()
    texts = answer_all(model, [messages for _, _, messages in asked], spec.chat)
    seconds = time.perf_counter() - start
    answers = [ProbeAnswer(model=model.name, prompt_id=p.id, variant=v, messages=messages, answer=text,
                           checks=[check.evaluate(text) for check in p.checks])
               for (p, v, messages), text in zip(asked, texts)]
    return ProbeRun(model=model.name, suite=suite.name, answers=answers, seconds=round(seconds, 2))


class PassRate(BaseModel):
    model: str
    variant: str
    check_type: str
    passed: int
    total: int

    @property
    def rate(self) -> float:
        return self.passed / self.total if self.total else 0.0

    def row(self) -> dict:
        return {**self.model_dump(), "pass_rate": round(self.rate, 4)}


def pass_rates(answers: Iterable[ProbeAnswer]) -> list[PassRate]:
    """Checks passed / checks asked per (model, variant, check type), plus each model's OVERALL rows per variant and
    per check type and over everything."""
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for a in answers:
        for c in a.checks:
            for variant in (a.variant, OVERALL):
                for check_type in (c.type, OVERALL):
                    cell = counts[(a.model, variant, check_type)]
                    cell[0] += c.passed
                    cell[1] += 1
    return [PassRate(model=m, variant=v, check_type=t, passed=p, total=n) for (m, v, t), (p, n) in counts.items()]


def rate_of(rates: list[PassRate], variant: str = OVERALL, check_type: str = OVERALL) -> PassRate:
    return next(r for r in rates if r.variant == variant and r.check_type == check_type)


class ProbeComparison(BaseModel):
    """The release gate's view: base vs fine-tuned on the same probes, and what the fine-tuned model newly fails."""

    base_rate: float
    finetuned_rate: float
    tolerance: float
    failures: list[str]
    newly_failing: list[str]

    @property
    def regressed(self) -> bool:
        return bool(self.failures)


def compare_runs(base: ProbeRun, finetuned: ProbeRun, tolerance: float, per_check_type: bool = False,
                 max_listed: int = 10) -> ProbeComparison:
    """Failures: the overall pass rate (and with per_check_type, each check type's) fell by more than tolerance.
    newly_failing names each check the base model passed and the fine-tuned model fails."""
    base_rates, tuned_rates = pass_rates(base.answers), pass_rates(finetuned.answers)
    types = sorted({r.check_type for r in base_rates if r.check_type != OVERALL}) if per_check_type else []
    failures = []
    for check_type in (OVERALL, *types):
        b, t = rate_of(base_rates, check_type=check_type).rate, rate_of(tuned_rates, check_type=check_type).rate
        if b - t > tolerance:
            what = "pass rate" if check_type == OVERALL else f"{check_type} pass rate"
            failures.append(f"{what} {t:.3f} < base {b:.3f} - tolerance {tolerance:.3f}")
    passed_by_base = {(a.prompt_id, a.variant, c.type): c.passed for a in base.answers for c in a.checks}
    newly = [f"{a.prompt_id}/{a.variant}/{c.type} ({c.detail})" for a in finetuned.answers for c in a.checks
             if not c.passed and passed_by_base.get((a.prompt_id, a.variant, c.type))]
    if failures and newly:
        more = f" and {len(newly) - max_listed} more" if len(newly) > max_listed else ""
        failures.append("newly failing checks: " + "; ".join(newly[:max_listed]) + more)
    return ProbeComparison(base_rate=rate_of(base_rates).rate, finetuned_rate=rate_of(tuned_rates).rate,
                           tolerance=tolerance, failures=failures, newly_failing=newly)


def rate_rows(rates: list[PassRate]) -> list[dict]:
    """Table rows sorted by model, variant, check type (OVERALL last in each group)."""
    order = lambda r: (r.model, r.variant == OVERALL, r.variant, r.check_type == OVERALL, r.check_type)  # noqa: E731
    return [r.row() for r in sorted(rates, key=order)]


def pass_rate_chart(rates: list[PassRate], path: str | Path) -> Path:
    """One panel per model: pass rate per check type, a bar per variant (and the model's overall rate per type)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    models = sorted({r.model for r in rates})
    types = sorted({r.check_type for r in rates if r.check_type != OVERALL}) + [OVERALL]
    present = {r.variant for r in rates}
    variants = [v for v in get_args(ProbeVariant) if v in present] + [OVERALL]
    table = {(r.model, r.variant, r.check_type): r.rate for r in rates}
    fig, axes = plt.subplots(len(models), 1, figsize=(max(8, 1.2 * len(types)), 0.6 + 3 * len(models)),
                             squeeze=False, layout="constrained")
    width = 0.8 / len(variants)
    x = np.arange(len(types))
    for ax, model in zip(axes[:, 0], models):
        for i, variant in enumerate(variants):
            ax.bar(x + i * width, [table.get((model, variant, t), np.nan) for t in types], width, label=variant)
        ax.set_title(model, loc="left")
        ax.set_xticks(x + width * (len(variants) - 1) / 2, types, rotation=20, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("pass rate")
        ax.grid(axis="y", alpha=0.3)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside upper center", ncols=len(variants))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def probe_model(target: ProbeTarget, suite: ProbeSuite, spec: ProbeSuiteSpec, work_dir: str | Path) -> ProbeRun:
    """Ask the suite of one model. A model with fixed weights (target.key) keeps its answers under a fingerprint of
    weights, suite and settings, so a re-run (or the release gate's base model, asked again) reads them back;
    endpoints are asked every time."""
    if target.key is None:
        return run_probes(open_chat_model(target), suite, spec)
    # What decides the answers (the gate's tolerance does not): the same model asked by the flow and by the gate
    # shares them.
    asked = spec.model_dump(include={"variants", "max_prompts", "chat"})
    out = Path(work_dir) / "probes" / fingerprint("probe-run-v1", target.key, suite, asked)
    with build_once(out) as needed:
        if needed:
            (out / "run.json").write_text(run_probes(open_chat_model(target), suite, spec).model_dump_json())
    run = ProbeRun.model_validate_json((out / "run.json").read_text())
    if run.model != target.name:  # the same weights asked under another label
        run = run.model_copy(update={"model": target.name,
                                     "answers": [a.model_copy(update={"model": target.name}) for a in run.answers]})
    return run
