"""Dolly -> Mixtral (mixture of experts): the instruction-tuning flow with LoRA on attention and on the experts,
plus each expert's share of routed tokens per layer, base vs fine-tuned, so a collapsed router shows.

    llmft run dolly-mixtral-moe [--recipe FILE] [key.sub=value ...]
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.dolly_llama2_sft import InstructionOutcome, dolly_llama2_sft
from llm_finetune.recipes import InstructionRecipe, load_recipe
from tasks.aws import aws_from_recipe
from tasks.evaluation import report_expert_routing

DEFAULT_RECIPE_PATH = Path(__file__).resolve().parent.parent / "recipes" / "dolly_mixtral_tiny.yaml"


@flow(name="dolly-mixtral-moe", log_prints=True)
@aws_from_recipe
def dolly_mixtral_moe(recipe: InstructionRecipe = load_recipe(DEFAULT_RECIPE_PATH, InstructionRecipe)
                      ) -> InstructionOutcome:
    outcome = dolly_llama2_sft(recipe)  # nested: the same data checks, training, evaluation and release
    outcome.routing = report_expert_routing(outcome.base_model, outcome.training, recipe.data, outcome.validated,
                                            recipe.evaluation)
    return outcome
