"""Dolly -> Llama-2 instruction tuning: check data and chat template, SFT (LoRA / QLoRA / full) with TRL, evaluate
base vs fine-tuned, then the shared release path (register, approve, deploy, test the endpoint).

    llmft run dolly-llama2-sft [--recipe recipes/dolly_llama2_7b.yaml] [key.sub=value ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from prefect import flow

from flows.release import ReleaseOutcome, release_model
from llm_finetune.data.instructions import SFTDataReport, instruction_test_cases
from llm_finetune.data.intake import ValidatedData
from llm_finetune.recipes import InstructionRecipe, load_recipe
from llm_finetune.training.causal_lm import CausalTrainingResult, causal_job
from llm_finetune.training.job import TrainingResult
from tasks.aws import aws_from_recipe
from tasks.data import check_sft_data, validate_data
from tasks.evaluation import evaluate_instruction_models
from tasks.models import materialize_base_model
from tasks.training import train_model

DEFAULT_RECIPE_PATH = Path(__file__).resolve().parent.parent / "recipes" / "dolly_llama2_tiny.yaml"


class InstructionOutcome(ReleaseOutcome):
    # `llmft run` prints the outcome without per-record results, row locators and the loss curve (all in artifacts).
    cli_exclude: ClassVar[dict] = {"endpoint_test": {"results"}, "validated": True, "training": {"loss_curve"}}

    metrics: dict[str, dict[str, float]]
    data_check: SFTDataReport
    base_model: str
    validated: ValidatedData
    training: CausalTrainingResult | TrainingResult  # a real JumpStart job's output: no adapter or merge check
    routing: dict[str, list[list[float]]] | None = None


@flow(name="dolly-llama2-sft", log_prints=True)
@aws_from_recipe
def dolly_llama2_sft(recipe: InstructionRecipe = load_recipe(DEFAULT_RECIPE_PATH, InstructionRecipe)
                     ) -> InstructionOutcome:
    work = recipe.work_dir
    validated = validate_data(recipe.data, work)
    base_model = materialize_base_model(recipe.model, recipe.data, validated, work)
    data_check = check_sft_data(recipe.data, validated, base_model)
    training = train_model(causal_job(base_model, validated, recipe.data, recipe.lora, recipe.training, work),
                           recipe.sagemaker)
    comparison = evaluate_instruction_models(base_model, training, recipe.data, validated, recipe.evaluation, work)
    release = release_model(recipe, base_model, validated.fingerprint, training, comparison.evidence(),
                            instruction_test_cases(validated, recipe.data, base_model, recipe.endpoint.num_test_records),
                            kind="text-generation")
    return InstructionOutcome(**dict(release), data_check=data_check, base_model=base_model, validated=validated,
                              training=training,
                              metrics={"base": comparison.base.metrics, "finetuned": comparison.finetuned.metrics})
