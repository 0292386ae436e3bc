"""Instruction-following probe tasks: read the suite, resolve each model under test, ask it the suite, report pass
rates (table, chart, MLflow run); and the probe gate the release path runs when a recipe sets `probe_gate`."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact
from pydantic import BaseModel

from llm_finetune.fingerprint import fingerprint, name_or_path_key
from llm_finetune.probes.chat_models import ProbeTarget, resolve_target
from llm_finetune.probes.results import (
    OVERALL,
    ProbeComparison,
    ProbeRun,
    compare_runs,
    pass_rate_chart,
    pass_rates,
    probe_model,
    rate_of,
    rate_rows,
)
from llm_finetune.probes.suite import ProbeSuite, load_suite
from llm_finetune.recipes.base import ProbeGateSpec, ProbeSuiteSpec
from llm_finetune.recipes.probes import InstructionProbeRecipe, ProbeModelSpec
from llm_finetune.registry.mlflow_registry import log_run


class ProbeReport(BaseModel):
    """Pass rates of every model (rows: model x variant x check type, 'all' = pooled), where the answers are."""

    pass_rates: list[dict]
    overall: dict[str, float]
    answers_path: str
    chart_path: str
    mlflow_run_id: str


@task(name="load-probe-suite")
def load_probe_suite(spec: ProbeSuiteSpec) -> ProbeSuite:
    """The suite file checked before any model is loaded (every bad prompt named by number, id and field)."""
    return load_suite(spec.suite).first(spec.max_prompts)


@task(name="resolve-probe-model", retries=2, retry_delay_seconds=[5, 15])
def resolve_probe_model(spec: ProbeModelSpec, corpus: list[str], work_dir: str, tracking_uri: str) -> ProbeTarget:
    target = resolve_target(spec, corpus, work_dir, tracking_uri)
    get_run_logger().info("%s: %s %s", target.name, target.kind, target.location)
    return target


@task(name="run-instruction-probes", task_run_name="run-instruction-probes-{target.name}")
def run_instruction_probes(target: ProbeTarget, suite: ProbeSuite, spec: ProbeSuiteSpec, work_dir: str) -> ProbeRun:
    run = probe_model(target, suite, spec, work_dir)
    rate = rate_of(pass_rates(run.answers))
    get_run_logger().info("%s: %d/%d checks passed (%.3f) in %.1fs", run.model, rate.passed, rate.total, rate.rate,
                          run.seconds)
    return run


@task(name="report-probe-pass-rates")
def report_probe_pass_rates(runs: list[ProbeRun], recipe: InstructionProbeRecipe) -> ProbeReport:
    """Pass rates per check type x variant x model as a table, a chart, and an MLflow run holding every answer."""
    answers = [a for run in runs for a in run.answers]
    rates = pass_rates(answers)
    out = Path(recipe.work_dir) / "probe-reports" / fingerprint([r.model_dump() for r in runs], recipe)
    out.mkdir(parents=True, exist_ok=True)
    answers_path = out / "answers.jsonl"
    answers_path.write_text("".join(json.dumps({**a.model_dump(), "passed": a.passed}) + "\n" for a in answers))
    rows = rate_rows(rates)
    (out / "pass_rates.json").write_text(json.dumps(rows, indent=1))
    chart = pass_rate_chart(rates, out / "pass_rates.png")
    overall = {run.model: rate_of(pass_rates(run.answers)).rate for run in runs}
    run_id = log_run(
        recipe.tracking_uri(), recipe.tracking.experiment, recipe.name,
        params={"suite": recipe.probes.suite, "variants": recipe.probes.variants, **recipe.probes.chat.model_dump(),
                "models": [m.name for m in recipe.models]},
        metrics={f"pass_rate.{r['model']}.{r['variant']}.{r['check_type']}": r["pass_rate"] for r in rows},
        files=[answers_path, out / "pass_rates.json", chart])
    create_table_artifact(key="probe-pass-rates", table=rows,
                          description="Checks passed / asked per model x variant x check type ('all' = pooled)")
    create_image_artifact(key="probe-pass-rate-chart", description="Pass rate per check type and variant",
                          image_url="data:image/png;base64," + base64.b64encode(chart.read_bytes()).decode())
    create_markdown_artifact(key="probe-failing-answers", markdown=failing_answers_markdown(runs),
                             description="A few answers that failed a check, per model")
    return ProbeReport(pass_rates=rows, overall=overall, answers_path=str(answers_path), chart_path=str(chart),
                       mlflow_run_id=run_id)


def failing_answers_markdown(runs: list[ProbeRun], per_model: int = 3) -> str:
    parts = []
    for run in runs:
        failed = [a for a in run.answers if not a.passed][:per_model]
        parts.append(f"## {run.model}\n")
        for a in failed:
            reasons = "; ".join(f"{c.type}: {c.detail}" for c in a.checks if not c.passed)
            parts.append(f"- `{a.prompt_id}` / {a.variant}: {reasons}\n\n  > {a.answer[:300]!r}\n")
    return "\n".join(parts)


@task(name="probe-gate")
def probe_gate(spec: ProbeGateSpec, base_model: str, finetuned_model: str, work_dir: str) -> ProbeComparison:
    """Base and fine-tuned model asked the same probes; failures (a pass-rate drop beyond the tolerance, with the
    checks the fine-tuned model newly fails) reject the release."""
    suite = load_suite(spec.suite).first(spec.max_prompts)
    runs = [probe_model(ProbeTarget(name=name, kind="local", location=path, key=name_or_path_key(path)), suite, spec,
                        work_dir) for name, path in (("base", base_model), ("finetuned", finetuned_model))]
    comparison = compare_runs(*runs, tolerance=spec.tolerance, per_check_type=spec.per_check_type)
    rows = [r.row() for r in pass_rates(runs[0].answers + runs[1].answers) if r.variant == OVERALL]
    create_table_artifact(key="probe-gate", table=rows, description=(
        f"Probe gate: pass rate base {comparison.base_rate:.3f}, fine-tuned {comparison.finetuned_rate:.3f}, "
        f"tolerance {spec.tolerance}: " + ("; ".join(comparison.failures) or "no regression")))
    get_run_logger().info("probe gate: base %.3f, fine-tuned %.3f: %s", comparison.base_rate,
                          comparison.finetuned_rate, "; ".join(comparison.failures) or "no regression")
    return comparison
