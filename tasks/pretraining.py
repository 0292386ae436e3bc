"""Pretraining tasks: has the corpus changed, which model training starts from, which documents it trains on (packed
into blocks), and what the corpus state is after a successful run."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel

from llm_finetune.data.intake import ValidatedData
from llm_finetune.data.raw_text import (
    CorpusCheck,
    DocumentSelection,
    PackedBlocks,
    corpus_fingerprint,
    document_key,
    documents,
    prepare_blocks,
    seen_documents,
    select_documents,
)
from llm_finetune.models.base import StartingModel, base_model_path
from llm_finetune.recipes import PretrainingRecipe
from llm_finetune.registry.mlflow_registry import alias_version, download_approved_model, model_tags, set_model_tag

CORPUS_TAG = "last_trained_corpus"  # registered-model tag: the corpus listing of the last successful run


@task(name="check-corpus")
def check_corpus(recipe: PretrainingRecipe) -> CorpusCheck:
    """Fingerprint the corpus listing and compare it with the one of the last successful run."""
    fp, files = corpus_fingerprint(recipe.data.train_uri)
    tags = model_tags(recipe.tracking_uri(), recipe.registry.model_name) or {}
    check = CorpusCheck(uri=recipe.data.train_uri, fingerprint=fp, files=files, last_trained=tags.get(CORPUS_TAG))
    get_run_logger().info("corpus %s: %s files, listing %s (last trained: %s)", check.uri, files, fp,
                          check.last_trained)
    return check


@task(name="report-no-new-data")
def report_no_new_data(check: CorpusCheck, reason: str) -> None:
    create_markdown_artifact(key="no-new-data", description="Nothing to train on", markdown=(
        f"## No new data\n\n{reason}\n\n- corpus: `{check.uri}` ({check.files} files)\n"
        f"- listing fingerprint: `{check.fingerprint}`\n- last trained on: `{check.last_trained}`\n\n"
        "No model was trained and no version registered."))


@task(name="record-trained-corpus")
def record_trained_corpus(recipe: PretrainingRecipe, check: CorpusCheck) -> None:
    """After a successful run: the listing it saw, so an unchanged corpus ends the next run early."""
    if check.fingerprint is not None and model_tags(recipe.tracking_uri(), recipe.registry.model_name) is not None:
        set_model_tag(recipe.tracking_uri(), recipe.registry.model_name, CORPUS_TAG, check.fingerprint)


@task(name="resolve-starting-model")
def resolve_starting_model(recipe: PretrainingRecipe, validated: ValidatedData) -> StartingModel:
    """The champion, fetched from the registry, or the base model on the first run."""
    uri, name = recipe.tracking_uri(), recipe.registry.model_name
    version = alias_version(uri, name, recipe.approval.alias)
    if version is None:
        path = base_model_path(recipe.model, recipe.data, validated, Path(recipe.work_dir) / "base-models")
        start = StartingModel(path=path, label="base model")
    else:
        root = Path(recipe.work_dir) / "registry-models" / f"{name}-v{version}"
        start = StartingModel(path=str(download_approved_model(uri, name, version, root)), label=f"champion v{version}",
                              version=version)
    get_run_logger().info("starting from the %s (%s)", start.label, start.path)
    return start


class TrainingDocuments(BaseModel):
    selection: DocumentSelection
    packed: PackedBlocks | None  # None when there is no new document to train on


@task(name="prepare-pretraining-blocks")
def prepare_pretraining_blocks(recipe: PretrainingRecipe, validated: ValidatedData, start: str,
                               replay_share: float = 0.0) -> TrainingDocuments:
    """The documents the starting model has not seen (all of them for a new model) plus `replay_share` of seen
    ones, held-out documents excluded, tokenized and packed into blocks; cached by content."""
    data = recipe.data
    seen = seen_documents(start)
    held_out = {document_key(t) for t in documents(validated, "validation", data.text_field)}
    texts, selection = select_documents(documents(validated, "train", data.text_field, data.max_train_records), seen,
                                        held_out, replay_share, recipe.training.seed)
    packed = None
    if selection.new:
        packed = prepare_blocks(texts, start, data.block_size, Path(recipe.work_dir) / "datasets", seen_before=seen)
    blocks = packed.model_dump(include={"blocks", "block_size", "tokens", "dropped_tokens"}) if packed else {}
    create_table_artifact(key="training-documents", table=[{**selection.model_dump(), **blocks}],
                          description="Documents of this run: new, replayed from those seen, left out")
    return TrainingDocuments(selection=selection, packed=packed)
