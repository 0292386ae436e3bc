"""Chat inference tasks: check the prompt suites, run each through the endpoint across the generation grid (outputs,
latency, tokens/s, cot accuracy; one comparison table per suite), log the run to MLflow."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel

from llm_finetune.data.suites import PromptSuite, load_suite, suite_prompts
from llm_finetune.errors import DataValidationError
from llm_finetune.probes.chat_inference import (
    SuiteRun,
    TokenCounter,
    bearer_token,
    client_for,
    comparison_rows,
    grid_points,
    markdown_table,
    metrics_of,
    samples_markdown,
)
from llm_finetune.recipes import ChatInferenceRecipe, GenerationGrid, InferenceTarget, PromptSuiteSpec
from llm_finetune.registry.mlflow_registry import log_run
from llm_finetune.serving.client import EndpointUnreachable


class SuiteReport(BaseModel):
    """One suite's comparison: a row per setting (and cot style), and where every output was written."""

    name: str
    kind: str
    route: str
    num_requests: int
    num_errors: int
    tokens_counted_by: list[str]
    rows: list[dict]
    outputs_path: str


@task(name="load-prompt-suites")
def load_prompt_suites(recipe: ChatInferenceRecipe) -> list[PromptSuite]:
    """Every suite checked (all problems of all files at once) and the token variable present, before any endpoint
    work."""
    bearer_token(recipe.endpoint)
    suites, problems = [], []
    for name, spec in recipe.suites.items():
        try:
            suites.append(load_suite(name, spec, recipe.work_dir))
        except DataValidationError as e:
            problems += e.problems
    if problems:
        raise DataValidationError(problems)
    get_run_logger().info("suites: %s", ", ".join(f"{s.name} ({len(s.records)} records)" for s in suites))
    return suites


def _endpoint_down(task, task_run, state) -> bool:
    """Retry a suite only when the endpoint gave no answer at all (a refused request is a result, not a failure)."""
    return isinstance(state.data, EndpointUnreachable)


@task(name="run-prompt-suite", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=_endpoint_down)
def run_prompt_suite(target: InferenceTarget, url: str | None, suite: PromptSuite, spec: PromptSuiteSpec,
                     grid: GenerationGrid, *, tokenizer: str | None, out_dir: str) -> SuiteReport:
    """Each prompt under each grid point; outputs to <out_dir>/<suite>.jsonl, the comparison as artifacts."""
    counter = TokenCounter(tokenizer) if tokenizer else None
    run = SuiteRun(client_for(target, url), suite.name, spec.route, counter)
    outputs = run.run(suite_prompts(suite, spec), grid_points(grid))
    rows = comparison_rows(outputs)
    path = Path(out_dir) / f"{suite.name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(o.model_dump_json() + "\n" for o in outputs))
    (path.parent / f"{suite.name}-comparison.json").write_text(json.dumps(rows, indent=2))
    where = url or target.url or f"SageMaker endpoint {target.sagemaker_endpoint}"
    create_table_artifact(key=f"chat-inference-{suite.name}", table=rows,
                          description=f"Suite {suite.name} ({suite.kind}, {spec.route} route) on {where}")
    create_markdown_artifact(
        key=f"chat-inference-{suite.name}-outputs",
        markdown=f"## Suite {suite.name} on {where}\n\n{markdown_table(rows)}\n\n### Sample outputs\n\n"
                 f"{samples_markdown(outputs)}\nEvery output: `{path}`\n",
        description=f"Suite {suite.name}: comparison and sample outputs")
    counted_by = sorted({o.tokens_counted_by for o in outputs if o.tokens_counted_by})
    errors = sum(o.error is not None for o in outputs)
    get_run_logger().info("suite %s: %d requests, %d refused, tokens counted by %s", suite.name, len(outputs),
                          errors, ", ".join(counted_by) or "nobody (tokens/s empty)")
    return SuiteReport(name=suite.name, kind=suite.kind, route=spec.route, num_requests=len(outputs),
                       num_errors=errors, tokens_counted_by=counted_by, rows=rows, outputs_path=str(path))


@task(name="log-chat-inference")
def log_chat_inference(recipe: ChatInferenceRecipe, endpoint: str, reports: list[SuiteReport]) -> str:
    """One MLflow run: the recipe's settings as params, every comparison figure as a metric, outputs as files."""
    tracking = recipe.tracking
    params = {"endpoint": endpoint, "suites": ",".join(r.name for r in reports),
              "grid.decoding": json.dumps([d.model_dump(exclude_none=True) for d in recipe.grid.decoding]),
              "grid.max_new_tokens": recipe.grid.max_new_tokens, "grid.stop": recipe.grid.stop}
    metrics = {k: v for r in reports for k, v in metrics_of(r.name, r.rows).items()}
    files = [Path(p) for r in reports for p in (r.outputs_path, Path(r.outputs_path).with_name(f"{r.name}-comparison.json"))]
    run_id = log_run(recipe.run_log_tracking_uri(), tracking.experiment, recipe.name,
                     params, metrics, files, tags={"flow": "chatbot-inference"})
    get_run_logger().info("logged to MLflow run %s", run_id)
    return run_id
