"""Data tasks: fetch and validate records first, tokenize into a content-addressed cache second."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from llm_finetune.backends.sagemaker_preparation import prepare_summarization_dataset_on_sagemaker
from llm_finetune.data import raw_text, summarization
from llm_finetune.data.classification import class_balance
from llm_finetune.data.instructions import SFTDataReport, check_sft_records
from llm_finetune.data.intake import ValidatedData
from llm_finetune.data.qa import qa_records
from llm_finetune.data.shapes import load_data
from llm_finetune.data.summarization import PreparedDataset
from llm_finetune.inference.extractive import windows
from llm_finetune.recipes import (
    ClassificationData,
    DataSource,
    InstructionData,
    PerplexityEvaluationParams,
    QAData,
    QARecipe,
    SageMakerSpec,
    SummarizationData,
)
from llm_finetune.training.causal_lm import load_tokenizer
from llm_finetune.training.extractive_qa import window_settings


@task(name="validate-data")
def validate_data(data: DataSource, work_dir: str) -> ValidatedData:
    """Fails with every bad record (file, line/row, field) before any model is built or trained."""
    validated = load_data(data, work_dir)
    get_run_logger().info("%s %s records (%s)", "reused checked" if validated.reused else "checked",
                          validated.num_records, validated.fingerprint)
    return validated


@task(name="prepare-summarization-dataset")
def prepare_summarization_dataset(
    data: SummarizationData, validated: ValidatedData, tokenizer: str, work_dir: str,
    sagemaker: SageMakerSpec | None = None,
) -> PreparedDataset:
    """Prompt + tokenize (no padding: batches are padded dynamically); reuses the cache for identical inputs. With
    `data.preparation_backend: sagemaker` the same code runs as a SageMaker Processing job."""
    cache = Path(work_dir) / "datasets"
    if data.preparation_backend == "sagemaker":
        prepared = prepare_summarization_dataset_on_sagemaker(
            data, validated, tokenizer, cache, sagemaker, on_output=get_run_logger().info,
            on_estimate=lambda e: create_markdown_artifact(key=f"sagemaker-{e.kind}-cost", markdown=e.markdown(),
                                                           description=e.summary()))
    else:
        prepared = summarization.prepare_summarization_dataset(data, validated, tokenizer, cache)
    get_run_logger().info(
        "%s tokenized dataset %s", "reused cached" if prepared.reused else "built", prepared.fingerprint
    )
    create_table_artifact(
        key="summarization-dataset",
        table=[prepared.model_dump(include={"fingerprint", "num_train", "num_validation", "source_tokens",
                                            "target_tokens", "reused"})],
        description="Tokenized DialogSum dataset",
    )
    return prepared


@task(name="check-sft-data")
def check_sft_data(data: InstructionData | QAData, validated: ValidatedData, base_model: str) -> SFTDataReport:
    """Before training: the chat template ends responses with EOS, max_length leaves every response something to
    learn, padding is not EOS; fails naming every bad record, else publishes the token counts."""
    report = check_sft_records(validated, data, load_tokenizer(base_model))
    create_table_artifact(
        key="sft-data-check",
        table=[{"split": name, **split.model_dump(exclude={"truncated_records", "dropped_records"})}
               for name, split in report.splits.items()],
        description=f"Chat-formatted records at max_length {report.max_length} (EOS {report.eos_token!r}, "
                    f"pad {report.pad_token!r})",
    )
    return report


@task(name="validate-held-out-sets")
def validate_held_out_sets(params: PerplexityEvaluationParams, work_dir: str) -> dict[str, ValidatedData]:
    """Every out-of-domain evaluation set through the intake layer, before any training: all problems at once."""
    checked = raw_text.validate_held_out_sets(params, work_dir)
    get_run_logger().info("out-of-domain sets: %s", {name: v.num_records for name, v in checked.items()})
    return checked


@task(name="report-class-balance")
def report_class_balance(data: ClassificationData, validated: ValidatedData) -> dict[str, dict[str, int]]:
    """Records per label per split (labels were checked against the recipe's set at validation)."""
    balance = class_balance(validated, data)
    create_table_artifact(
        key="class-balance",
        table=[{"split": split, **counts, "total": sum(counts.values())} for split, counts in balance.items()],
        description=f"Records per label ({data.label_field})",
    )
    get_run_logger().info("class balance %s", balance)
    return balance


@task(name="check-qa-data")
def check_qa_data(recipe: QARecipe, validated: ValidatedData, base_model: str) -> dict:
    """Before training, how the questions fit max_length: generative, the SFT token checks (answers cut or dropped
    fail the run, naming the records); extractive, how many contexts need several windows."""
    if recipe.generative is not None:
        return check_sft_data.fn(recipe.data, validated, base_model).model_dump()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    table = []
    for split, limit in (("train", recipe.data.max_train_records), ("validation", recipe.data.max_validation_records)):
        records = qa_records(validated, split, recipe.data, limit)
        enc = windows(tokenizer, [r["question"] for r in records], [r["context"] for r in records],
                      window_settings(recipe.data, recipe.extractive))
        per_record = [enc["example_index"].count(i) for i in range(len(records))]
        table.append({"split": split, "records": len(records), "windows": len(enc["example_index"]),
                      "records_with_several_windows": sum(n > 1 for n in per_record)})
    create_table_artifact(key="qa-windows", table=table, description=(
        f"Question + context windows of {recipe.data.max_length} tokens, stride {recipe.extractive.doc_stride}"))
    return {"splits": {row["split"]: row for row in table}}
