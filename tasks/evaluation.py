"""Evaluation tasks: the starting and the trained model on the same held-out records, side by side (ROUGE,
response perplexity, held-out perplexity, code completions)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from prefect import task
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact
from pydantic import BaseModel

from llm_finetune.data.instructions import instruction_eval_records
from llm_finetune.data.intake import ValidatedData
from llm_finetune.data.qa import qa_records
from llm_finetune.data.raw_text import held_out_texts
from llm_finetune.data.summarization import summarization_records
from llm_finetune.evaluation.arms import METRICS as ARM_METRICS
from llm_finetune.evaluation.arms import (
    ArmRun,
    ArmSummary,
    PairedComparison,
    markdown,
    paired,
    plot,
    summarize,
    table_rows,
)
from llm_finetune.evaluation.causal import (
    InstructionComparison,
    compare,
    evaluate_instruction_model,
    expert_routing_shares,
    routing_shares_markdown,
)
from llm_finetune.evaluation.classification import (
    ClassificationComparison,
    classification_eval_records,
    compare_classifiers,
    evaluate_classifier,
)
from llm_finetune.evaluation.pretraining import CompletionEval, PretrainComparison, compare_held_out, complete_code
from llm_finetune.evaluation.qa import QAComparison, compare_qa, eval_limit, evaluate_extractive, evaluate_generative
from llm_finetune.evaluation.rouge import SummarizationComparison, evaluate_summarizer
from llm_finetune.fingerprint import build_once, fingerprint, name_or_path_key
from llm_finetune.models.base import StartingModel
from llm_finetune.recipes import (
    CausalEvaluationParams,
    ClassificationData,
    ClassificationEvaluationParams,
    CodeCompletionParams,
    EvaluationParams,
    InstructionData,
    PerplexityEvaluationParams,
    QARecipe,
    RawTextData,
    SummarizationData,
)
from llm_finetune.registry.mlflow_registry import log_report
from llm_finetune.training.extractive_qa import window_settings
from llm_finetune.training.job import TrainingResult

C = TypeVar("C", bound=BaseModel)


def evaluation_dir(work_dir: str | Path, key: str) -> Path:
    return Path(work_dir) / "evaluations" / key


def kept_comparison(work_dir: str | Path, key: str, kind: type[C], build: Callable[[Path], C]) -> C:
    """The comparison kept in <work_dir>/evaluations/<key>/comparison.json: built once (`build` gets the folder, to
    write more files beside it), then read back, so a re-run or a concurrent run reads what the first wrote."""
    out = evaluation_dir(work_dir, key)
    with build_once(out) as needed:
        if needed:
            (out / "comparison.json").write_text(build(out).model_dump_json())
    return kind.model_validate_json((out / "comparison.json").read_text())


@task(name="evaluate-base-and-finetuned")
def evaluate_base_and_finetuned(
    base_model: str,
    training: TrainingResult,
    data: SummarizationData,
    validated: ValidatedData,
    params: EvaluationParams,
    work_dir: str,
) -> SummarizationComparison:
    """Scores are kept under a fingerprint of both models, the data and the settings: a re-run reads them back."""
    key = fingerprint("summarization-eval-v1", name_or_path_key(base_model), training.fingerprint or training.model_dir,
                      validated.fingerprint, data, params)
    comparison = kept_comparison(work_dir, key, SummarizationComparison,
                                 lambda _: _compare(base_model, training.model_dir, data, validated, params))
    create_table_artifact(key="rouge-base-vs-finetuned", table=comparison.metric_rows(),
                          description=f"ROUGE on {comparison.finetuned.num_records} validation records")
    create_markdown_artifact(key="sample-summaries", markdown=comparison.markdown(),
                             description="Base vs fine-tuned summaries")
    return comparison


def _compare(base_model: str, finetuned_model: str, data: SummarizationData, validated: ValidatedData,
             params: EvaluationParams) -> SummarizationComparison:
    records = summarization_records(validated, "validation", data, params.max_records)
    runs = [
        evaluate_summarizer(
            model, records, data.prompt_template, batch_size=params.batch_size, generation=params.generation,
            max_source_tokens=data.max_source_tokens,
        )
        for model in (base_model, finetuned_model)
    ]
    samples = [
        {"id": r["id"], "dialogue": r["dialogue"], "reference": r["summary"], "base": b, "finetuned": f}
        for r, b, f in zip(records[: params.num_samples_shown], runs[0].predictions, runs[1].predictions)
    ]
    return SummarizationComparison(base=runs[0], finetuned=runs[1], samples=samples)


@task(name="evaluate-instruction-models")
def evaluate_instruction_models(
    base_model: str,
    training: TrainingResult,
    data: InstructionData,
    validated: ValidatedData,
    params: CausalEvaluationParams,
    work_dir: str,
) -> InstructionComparison:
    """Base vs fine-tuned on the validation split: response-token loss and perplexity, ROUGE of greedy responses,
    the same per category; kept under a fingerprint of both models, the data and the settings."""
    key = fingerprint("instruction-eval-v1", name_or_path_key(base_model), training.fingerprint or training.model_dir,
                      validated.fingerprint, data, params)

    def build(_) -> InstructionComparison:
        records = instruction_eval_records(validated, data, params.max_records)
        runs = [evaluate_instruction_model(model, records, params.batch_size, data.max_length, params.generation)
                for model in (base_model, training.model_dir)]
        return compare(*runs, num_samples=params.num_samples_shown)

    comparison = kept_comparison(work_dir, key, InstructionComparison, build)
    create_table_artifact(key="instruction-metrics-base-vs-finetuned", table=comparison.metric_rows(),
                          description=f"On {comparison.finetuned.num_records} validation records")
    if comparison.category_rows():
        create_table_artifact(key="instruction-metrics-per-category", table=comparison.category_rows(),
                              description="Per Dolly category")
    create_markdown_artifact(key="sample-responses", markdown=comparison.markdown(),
                             description="Base vs fine-tuned responses")
    return comparison


@task(name="report-expert-routing")
def report_expert_routing(base_model: str, training: TrainingResult, data: InstructionData,
                          validated: ValidatedData, params: CausalEvaluationParams) -> dict[str, list[list[float]]]:
    """Each expert's share of routed tokens per layer, base vs fine-tuned, on the validation prompts and responses:
    a collapsed router (one expert taking most tokens) shows at a glance."""
    records = instruction_eval_records(validated, data, params.max_records)
    texts = [" ".join(m["content"] for m in r["prompt"] + r["completion"]) for r in records]
    shares = {name: expert_routing_shares(model, texts, params.batch_size, data.max_length)
              for name, model in (("base", base_model), ("finetuned", training.model_dir))}
    create_markdown_artifact(key="expert-routing", markdown=routing_shares_markdown(shares["base"], shares["finetuned"]),
                             description="Share of routed tokens per expert and layer, base vs fine-tuned")
    return shares


@task(name="evaluate-held-out-perplexity")
def evaluate_held_out_perplexity(
    start: StartingModel,
    training: TrainingResult,
    data: RawTextData,
    validated: ValidatedData,
    out_of_domain: dict[str, ValidatedData],
    params: PerplexityEvaluationParams,
    work_dir: str,
) -> PretrainComparison:
    """The starting model (champion or base) and the trained one on the same held-out sets: perplexity in domain
    (validation split) and out of domain, as a table and a plot; both continue the first validation documents.
    Kept under a fingerprint of both models, the data and the settings."""
    key = fingerprint("perplexity-eval-v1", name_or_path_key(start.path), training.fingerprint or training.model_dir,
                      validated.fingerprint, {n: v.fingerprint for n, v in out_of_domain.items()}, data.text_field,
                      data.block_size, params)

    def build(out: Path) -> PretrainComparison:
        sets = held_out_texts(validated, data, params, out_of_domain)
        comparison = compare_held_out(start.path, training.model_dir, sets, data.block_size, params, start.label)
        comparison.plot_png(out / "perplexity.png")
        return comparison

    comparison = kept_comparison(work_dir, key, PretrainComparison, build)
    out = evaluation_dir(work_dir, key)
    create_table_artifact(key="held-out-perplexity", table=comparison.rows(),
                          description=f"Perplexity on held-out documents: {start.label} vs challenger")
    png = base64.b64encode((out / "perplexity.png").read_bytes()).decode()
    create_image_artifact(image_url=f"data:image/png;base64,{png}", key="held-out-perplexity-plot",
                          description=f"Perplexity per held-out set, {start.label} vs challenger")
    create_markdown_artifact(key="held-out-perplexity-report", markdown=comparison.markdown(),
                             description="Perplexity table and sample continuations")
    return comparison


@task(name="evaluate-code-completions")
def evaluate_code_completions(base_model: str, training: TrainingResult, params: CodeCompletionParams,
                              work_dir: str) -> dict[str, CompletionEval]:
    """Both models complete the fixed Python prompts; each completion, cut at the next top-level statement, counts when
    it adds a statement to the function body and the program parses. The samples go to an artifact."""
    key = fingerprint("code-completions-v1", name_or_path_key(base_model), training.fingerprint or training.model_dir,
                      params)
    out = evaluation_dir(work_dir, key)
    with build_once(out) as needed:
        if needed:
            runs = {name: complete_code(model, params.prompts, params.generation)
                    for name, model in (("base", base_model), ("trained", training.model_dir))}
            (out / "completions.json").write_text(json.dumps({k: v.model_dump() for k, v in runs.items()}))
    runs = {k: CompletionEval.model_validate(v) for k, v in json.loads((out / "completions.json").read_text()).items()}
    trained = runs["trained"]
    create_table_artifact(
        key="code-parse-rate", description="Completions that add a statement and parse (ast.parse)", table=[
            {"model": name, **{k: round(v, 4) for k, v in run.metrics().items()}, "counted": sum(run.counted),
             "parsed": sum(run.parsed), "prompts": len(run.parsed)} for name, run in runs.items()])
    samples = "\n\n".join(f"### Prompt {i + 1}: {_verdict(ok, n)}\n```python\n{code}\n```"
                          for i, (code, ok, n) in enumerate(zip(trained.completions, trained.parsed, trained.counted)))
    create_markdown_artifact(key="code-completion-samples", markdown=samples,
                             description="Trained model's completions, cut at the next top-level statement")
    return runs


def _verdict(parsed: bool, counted: int) -> str:
    return "adds code that parses" if counted else "parses but adds no statement" if parsed else "does not parse"


@task(name="evaluate-classifiers")
def evaluate_classifiers(
    base_model: str,
    training: TrainingResult,
    data: ClassificationData,
    validated: ValidatedData,
    params: ClassificationEvaluationParams,
    seed: int,
    work_dir: str,
) -> ClassificationComparison:
    """Accuracy, macro-F1 and confusion matrix of the base model (a new head, seeded) and the fine-tuned one on the
    same validation records; kept under a fingerprint of both models, the data and the settings."""
    key = fingerprint("classification-eval-v1", name_or_path_key(base_model), training.fingerprint or training.model_dir,
                      validated.fingerprint, data, params, seed)

    def build(_) -> ClassificationComparison:
        records = classification_eval_records(validated, data, params.max_records)
        base = evaluate_classifier(base_model, records, data, batch_size=params.batch_size, seed=seed, new_head=True)
        tuned = evaluate_classifier(training.model_dir, records, data, batch_size=params.batch_size)
        return compare_classifiers(base, tuned, records, data.labels, params.num_samples_shown)

    comparison = kept_comparison(work_dir, key, ClassificationComparison, build)
    create_table_artifact(key="classification-base-vs-finetuned", table=comparison.metric_rows(),
                          description=f"On {comparison.finetuned.num_records} validation records")
    create_markdown_artifact(key="classification-report", markdown=comparison.markdown(),
                             description="Confusion matrices and misclassified reviews")
    return comparison


@task(name="evaluate-qa-models")
def evaluate_qa_models(base_model: str, training: TrainingResult, recipe: QARecipe, validated: ValidatedData
                       ) -> QAComparison:
    """SQuAD exact match and F1 of the base and the fine-tuned model on the same validation questions, and the
    worst-F1 questions; kept under a fingerprint of both models, the data and the settings."""
    key = fingerprint("qa-eval-v1", name_or_path_key(base_model), training.fingerprint or training.model_dir,
                      validated.fingerprint, recipe.data, recipe.evaluation, recipe.approach)
    comparison = kept_comparison(recipe.work_dir, key, QAComparison,
                                 lambda _: _compare_qa(base_model, training, recipe, validated))
    create_table_artifact(key="squad-base-vs-finetuned", table=comparison.metric_rows(),
                          description=f"SQuAD v1.1 EM / F1 on {comparison.finetuned.num_records} validation questions")
    create_table_artifact(key="squad-worst-f1", table=comparison.worst,
                          description="Fine-tuned model's lowest-F1 questions")
    create_markdown_artifact(key="squad-report", markdown=comparison.markdown(), description="Base vs fine-tuned")
    return comparison


def _compare_qa(base_model: str, training: TrainingResult, recipe: QARecipe, validated: ValidatedData
                ) -> QAComparison:
    params = recipe.evaluation
    records = qa_records(validated, "validation", recipe.data, eval_limit(recipe.data, params))
    if recipe.generative is not None:
        runs = [evaluate_generative(m, validated, recipe.data, params) for m in (base_model, training.model_dir)]
    else:
        settings = window_settings(recipe.data, recipe.extractive)
        runs = [evaluate_extractive(m, records, settings, params, seed=recipe.extractive.training.seed)
                for m in (base_model, training.model_dir)]
    return compare_qa(*runs, records, params.num_worst_shown)


class ArmComparison(BaseModel):
    runs: list[ArmRun]
    summaries: list[ArmSummary]
    paired: PairedComparison | None
    plot_path: str
    markdown: str
    mlflow_run_id: str


@task(name="publish-arm-comparison")
def publish_arm_comparison(runs: list[ArmRun], pair: tuple[str, str] | None, tracking_uri: str, experiment: str,
                           work_dir: str) -> ArmComparison:
    """Mean +- std per arm over seeds, the paired comparison of two arms, a plot; as Prefect artifacts and one
    MLflow run (metrics per arm, the plot and the markdown table)."""
    summaries = summarize(runs)
    comparison = paired(runs, *pair) if pair else None
    out = Path(work_dir) / "comparisons" / fingerprint("arm-comparison-v1", runs, pair)
    png = plot(summaries, runs, out / "arm_comparison.png")
    text = markdown(summaries, comparison, runs)
    (out / "arm_comparison.md").write_text(text)
    metrics = {f"{s.arm}.{m}_{stat}": getattr(s, stat)[m] for s in summaries for m in ARM_METRICS
               for stat in ("mean", "std")}
    if comparison:
        metrics |= {f"paired.{m}_mean_difference": comparison.mean_difference[m] for m in ARM_METRICS}
    run_id = log_report(tracking_uri, experiment, "sentiment-comparison", metrics, [png, out / "arm_comparison.md"],
                        {"arms": ",".join(s.arm for s in summaries), "seeds": str(sorted({r.seed for r in runs}))})
    create_table_artifact(key="arm-comparison", table=table_rows(summaries),
                          description="Accuracy and macro-F1, mean +- std over seeds")
    create_markdown_artifact(key="arm-comparison-report", markdown=f"{text}\n\nPlot: `{png}` (also in MLflow run "
                             f"{run_id})", description="Arms over seeds, paired comparison")
    return ArmComparison(runs=runs, summaries=summaries, paired=comparison, plot_path=str(png), markdown=text,
                         mlflow_run_id=run_id)
