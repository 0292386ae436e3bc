"""Chatbot inference: prompt suites (chat, multi-turn assistant, chain-of-thought arithmetic) through an endpoint across
a grid of generation settings; every output with latency and tokens/s, cot accuracy per setting, one comparison table
per suite. The endpoint is a URL, a SageMaker endpoint, or a registered version served locally for the run.

    llmft run chatbot-inference [--recipe recipes/chatbot_inference_tiny.yaml] [key.sub=value ...]
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from prefect import flow
from pydantic import BaseModel, Field

from llm_finetune.recipes import ChatInferenceRecipe, load_recipe
from llm_finetune.serving.endpoint import EndpointHandle
from tasks.aws import aws_from_recipe
from tasks.chat_inference import SuiteReport, load_prompt_suites, log_chat_inference, run_prompt_suite
from tasks.endpoint import deploy_local_endpoint, stop_endpoint
from tasks.registry import resolve_model_version

DEFAULT_RECIPE_PATH = Path(__file__).resolve().parent.parent / "recipes" / "chatbot_inference_tiny.yaml"


class ChatInferenceOutcome(BaseModel):
    cli_exclude: ClassVar[dict] = {"suites": {"__all__": {"rows"}}}

    endpoint: str = Field(description="What answered: a URL or 'sagemaker:<name>'")
    suites: list[SuiteReport]
    outputs_dir: str
    mlflow_run_id: str | None = None
    running_endpoint: EndpointHandle | None = Field(None, description="Set when endpoint.local.keep_running is true")


@flow(name="chatbot-inference", log_prints=True)
@aws_from_recipe
def chatbot_inference(recipe: ChatInferenceRecipe = load_recipe(DEFAULT_RECIPE_PATH, ChatInferenceRecipe)
                      ) -> ChatInferenceOutcome:
    target, work = recipe.endpoint, recipe.work_dir
    suites = load_prompt_suites(recipe)
    deployed = _deploy(recipe) if target.registered_model else None
    url = deployed.url if deployed else target.url
    out_dir = str(Path(work) / "chat-inference" / f"{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}")
    tokenizer = deployed.model_dir if deployed else target.tokenizer
    reports = []
    try:
        for suite, spec in zip(suites, recipe.suites.values()):
            reports.append(run_prompt_suite(target, url, suite, spec, recipe.grid, tokenizer=tokenizer,
                                            out_dir=out_dir))
    finally:  # a local endpoint is left up only when asked for and only when every suite ran
        keep = deployed is not None and target.local.keep_running and len(reports) == len(suites)
        if deployed is not None and not keep:
            stop_endpoint(deployed)
    where = url or f"sagemaker:{target.sagemaker_endpoint}"
    run_id = log_chat_inference(recipe, where, reports) if recipe.tracking else None
    return ChatInferenceOutcome(endpoint=where, suites=reports, outputs_dir=out_dir, mlflow_run_id=run_id,
                                running_endpoint=deployed if keep else None)


def _deploy(recipe: ChatInferenceRecipe) -> EndpointHandle:
    ref = recipe.endpoint.registered_model
    tracking_uri = recipe.registered_model_tracking_uri()
    version = resolve_model_version(tracking_uri, ref.name, ref.version, ref.alias)
    return deploy_local_endpoint(version, tracking_uri, recipe.endpoint.local, recipe.work_dir)
