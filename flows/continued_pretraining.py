"""Scheduled continued pretraining with champion/challenger: when the corpus has documents the champion has not
seen, train a challenger on them (plus a replayed share of seen ones) from the champion (the base model on the first
run), compare both on held-out perplexity in and out of domain, and promote it only if it wins (release subflow).
An unchanged corpus ends the run early. `rollback-champion` moves the champion alias back to the previous champion.

    llmft run continued-pretraining [--recipe FILE] [key.sub=value ...]
    llmft run rollback-champion [--recipe FILE]
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from prefect import flow, get_run_logger
from pydantic import BaseModel

from flows.release import ReleaseOutcome, release_model
from llm_finetune.data.raw_text import CorpusCheck, DocumentSelection, continuation_test_cases, documents
from llm_finetune.models.base import StartingModel
from llm_finetune.recipes import ContinuedPretrainingRecipe, load_recipe
from llm_finetune.training.pretrain import PretrainingResult, pretrain_job
from tasks.aws import aws_from_recipe
from tasks.data import validate_data, validate_held_out_sets
from tasks.evaluation import evaluate_held_out_perplexity
from tasks.pretraining import (
    check_corpus,
    prepare_pretraining_blocks,
    record_trained_corpus,
    report_no_new_data,
    resolve_starting_model,
)
from tasks.registry import rollback_champion_alias
from tasks.training import train_model

DEFAULT_RECIPE_PATH = Path(__file__).resolve().parent.parent / "recipes" / "continued_pretraining_gpt2_tiny.yaml"


class ContinuedPretrainingOutcome(BaseModel):
    cli_exclude: ClassVar[dict] = {"release": {"endpoint_test": {"results"}}, "training": {"loss_curve"}}

    status: Literal["trained", "no-new-data"]
    corpus: CorpusCheck
    starting_model: StartingModel | None = None
    selection: DocumentSelection | None = None
    training: PretrainingResult | None = None
    metrics: dict[str, dict[str, float]] | None = None  # 'champion' (or 'base') and 'challenger'
    release: ReleaseOutcome | None = None


def with_corpus(recipe: ContinuedPretrainingRecipe, corpus_uri: str | None) -> ContinuedPretrainingRecipe:
    """The recipe training on `corpus_uri` (a deployment parameter; local paths relative to the working directory)."""
    if corpus_uri is None:
        return recipe
    uri = corpus_uri if "://" in corpus_uri else str(Path(corpus_uri).resolve())
    return recipe.model_copy(update={"data": recipe.data.model_copy(update={"train_uri": uri})})


@flow(name="continued-pretraining", log_prints=True)
@aws_from_recipe
def continued_pretraining(
    recipe: ContinuedPretrainingRecipe = load_recipe(DEFAULT_RECIPE_PATH, ContinuedPretrainingRecipe),
    corpus_uri: str | None = None,
) -> ContinuedPretrainingOutcome:
    """corpus_uri: a folder or s3:// prefix of documents to train on, instead of the recipe's data.train_uri."""
    recipe, work = with_corpus(recipe, corpus_uri), recipe.work_dir
    corpus = check_corpus(recipe)
    if corpus.unchanged:
        report_no_new_data(corpus, "The corpus listing is the one the last successful run trained on.")
        return ContinuedPretrainingOutcome(status="no-new-data", corpus=corpus)
    validated = validate_data(recipe.data, work)
    out_of_domain = validate_held_out_sets(recipe.evaluation, work)
    start = resolve_starting_model(recipe, validated)
    docs = prepare_pretraining_blocks(recipe, validated, start.path, recipe.replay_share)
    if docs.packed is None:
        report_no_new_data(corpus, f"The corpus changed, but the {start.label} has seen every document in it.")
        record_trained_corpus(recipe, corpus)
        return ContinuedPretrainingOutcome(status="no-new-data", corpus=corpus, starting_model=start,
                                           selection=docs.selection)
    training = train_model(pretrain_job(start.path, docs.packed, recipe.training, work), recipe.sagemaker)
    comparison = evaluate_held_out_perplexity(start, training, recipe.data, validated, out_of_domain,
                                              recipe.evaluation, work)
    test_cases = continuation_test_cases(documents(validated, "validation", recipe.data.text_field), start.path,
                                         recipe.evaluation.sample_prompt_tokens, recipe.endpoint.num_test_records)
    release = release_model(recipe, start.path, docs.packed.fingerprint, training, comparison.evidence(), test_cases,
                            kind="text-generation")
    record_trained_corpus(recipe, corpus)
    get_run_logger().info("challenger v%s %s", release.version.version,
                          "promoted" if release.decision.approved else f"rejected: {release.decision.reason}")
    return ContinuedPretrainingOutcome(
        status="trained", corpus=corpus, starting_model=start, selection=docs.selection, training=training,
        metrics={start.label.split()[0]: comparison.metrics("base"), "challenger": comparison.metrics("trained")},
        release=release)


class RollbackOutcome(BaseModel):
    demoted: str
    restored: str


@flow(name="rollback-champion", log_prints=True)
@aws_from_recipe
def rollback_champion(
    recipe: ContinuedPretrainingRecipe = load_recipe(DEFAULT_RECIPE_PATH, ContinuedPretrainingRecipe),
    reason: str = "manual rollback",
) -> RollbackOutcome:
    """Move the champion alias back to the version the previous-champion alias marks (one alias move)."""
    demoted, restored = rollback_champion_alias(recipe, reason)
    return RollbackOutcome(demoted=demoted, restored=restored)
