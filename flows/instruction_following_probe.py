"""Instruction-following probes across models: a suite of prompts with programmatic checks (IFEval style), each asked
zero-shot, with a system role, few-shot and with a format reminder, of every model in the recipe (registered
versions or aliases, Hub ids, local folders, tiny offline models, HTTP or SageMaker endpoints); pass rate per
check type x variant x model as a table, a chart and an MLflow run with every answer.

    llmft run instruction-following-probe [--recipe recipes/instruction_following_probe_mistral.yaml] [key=value ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from prefect import flow
from pydantic import BaseModel

from llm_finetune.probes.chat_models import ProbeTarget
from llm_finetune.probes.suite import suite_texts
from llm_finetune.recipes import load_recipe
from llm_finetune.recipes.probes import InstructionProbeRecipe
from tasks.aws import aws_from_recipe
from tasks.probes import (
    ProbeReport,
    load_probe_suite,
    report_probe_pass_rates,
    resolve_probe_model,
    run_instruction_probes,
)

DEFAULT_RECIPE_PATH = Path(__file__).resolve().parent.parent / "recipes" / "instruction_following_probe_tiny.yaml"


class ProbeOutcome(BaseModel):
    cli_exclude: ClassVar[dict] = {"report": {"pass_rates"}}  # the full table is an artifact and a file

    targets: list[ProbeTarget]
    report: ProbeReport


@flow(name="instruction-following-probe", log_prints=True)
@aws_from_recipe
def instruction_following_probe(
    recipe: InstructionProbeRecipe = load_recipe(DEFAULT_RECIPE_PATH, InstructionProbeRecipe),
) -> ProbeOutcome:
    suite = load_probe_suite(recipe.probes)
    targets = [resolve_probe_model(m, suite_texts(suite), recipe.work_dir, recipe.tracking_uri())
               for m in recipe.models]
    runs = [run_instruction_probes(t, suite, recipe.probes, recipe.work_dir) for t in targets]
    return ProbeOutcome(targets=targets, report=report_probe_pass_rates(runs, recipe))
