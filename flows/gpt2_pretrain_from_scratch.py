"""GPT-2 pretrained from scratch on Python code (CodeParrot): a byte-level BPE trained on the code, a GPT-2 built
from a config, causal-LM training on packed blocks, held-out perplexity and completions of fixed Python prompts
that count when they add a statement and parse (random init vs trained), then the shared release path.

    llmft run gpt2-pretrain-from-scratch [--recipe recipes/codeparrot_small.yaml] [key.sub=value ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from prefect import flow

from flows.release import ReleaseOutcome, release_model
from llm_finetune.data.raw_text import DocumentSelection
from llm_finetune.kinds import EndpointTestCase
from llm_finetune.models.base import StartingModel
from llm_finetune.recipes import CodePretrainingRecipe, load_recipe
from llm_finetune.training.pretrain import PretrainingResult, pretrain_job
from tasks.aws import aws_from_recipe
from tasks.data import validate_data, validate_held_out_sets
from tasks.evaluation import evaluate_code_completions, evaluate_held_out_perplexity
from tasks.models import materialize_base_model
from tasks.pretraining import prepare_pretraining_blocks
from tasks.training import train_model

DEFAULT_RECIPE_PATH = Path(__file__).resolve().parent.parent / "recipes" / "codeparrot_gpt2_tiny.yaml"


class CodePretrainingOutcome(ReleaseOutcome):
    cli_exclude: ClassVar[dict] = {"endpoint_test": {"results"}, "training": {"loss_curve"}}

    base_model: str
    selection: DocumentSelection
    training: PretrainingResult
    metrics: dict[str, dict[str, float]]  # 'random_init' and 'trained'
    completions: list[str]  # the trained model's, cut at the next top-level statement


@flow(name="gpt2-pretrain-from-scratch", log_prints=True)
@aws_from_recipe
def gpt2_pretrain_from_scratch(
    recipe: CodePretrainingRecipe = load_recipe(DEFAULT_RECIPE_PATH, CodePretrainingRecipe),
) -> CodePretrainingOutcome:
    work = recipe.work_dir
    validated = validate_data(recipe.data, work)
    out_of_domain = validate_held_out_sets(recipe.evaluation, work)
    base_model = materialize_base_model(recipe.model, recipe.data, validated, work)  # tokenizer trained on the code
    docs = prepare_pretraining_blocks(recipe, validated, base_model)
    training = train_model(pretrain_job(base_model, docs.packed, recipe.training, work), recipe.sagemaker)
    start = StartingModel(path=base_model, label="random init")
    comparison = evaluate_held_out_perplexity(start, training, recipe.data, validated, out_of_domain,
                                              recipe.evaluation, work)
    completions = evaluate_code_completions(base_model, training, recipe.completions, work)
    comparison = comparison.with_completions(completions["base"], completions["trained"])
    test_cases = [EndpointTestCase(id=str(i), inputs=p, reference="") for i, p in enumerate(recipe.completions.prompts)]
    release = release_model(recipe, base_model, docs.packed.fingerprint, training, comparison.evidence(), test_cases,
                            kind="text-generation")
    return CodePretrainingOutcome(
        **dict(release), base_model=base_model, selection=docs.selection, training=training,
        metrics={"random_init": comparison.metrics("base"), "trained": comparison.metrics("trained")},
        completions=completions["trained"].completions)
