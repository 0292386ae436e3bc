"""Extractive question answering: an encoder with a span head (AutoModelForQuestionAnswering) trained with
transformers' Trainer on run_qa windows (llm_finetune.inference.extractive); resumable; saves a servable model.

    python -m llm_finetune.training.extractive_qa --job job.json
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

from llm_finetune.data.intake import ValidatedData
from llm_finetune.fingerprint import fingerprint, name_or_path_key
from llm_finetune.inference.extractive import WindowSettings, span_labels, windows
from llm_finetune.recipes import ExtractiveQA, QAData, QARecipe
from llm_finetune.training.causal_lm import causal_job
from llm_finetune.training.classification import collator, training_arguments
from llm_finetune.training.common import TrainingTokenCounter, resolve_precision
from llm_finetune.training.job import (
    CHECKPOINTS_DIR,
    MODEL_DIR,
    TrainingResult,
    TrainJob,
    finished_result,
    last_complete_checkpoint,
    run_entry_point,
    save_trained_model,
    trainer_result_fields,
    write_serving_file,
)


class ExtractiveTrainingResult(TrainingResult):
    records: int
    windows: int  # training windows (a long context gives several)
    windows_without_answer: int  # labelled with the CLS position, as run_qa does


class ExtractiveTrainJob(TrainJob):
    entry_module: ClassVar[str] = "llm_finetune.training.extractive_qa"
    input_paths: ClassVar[dict[str, str]] = {"base_model": "base_model", "data": "validated.path"}
    result_type: ClassVar[type[TrainingResult]] = ExtractiveTrainingResult
    base_model: str
    validated: ValidatedData
    data: QAData
    spec: ExtractiveQA

    @property
    def nproc_per_node(self) -> int:
        return self.spec.training.nproc_per_node

    @property
    def backend(self) -> str:
        return self.spec.training.backend


def extractive_job(base_model: str, validated: ValidatedData, data: QAData, spec: ExtractiveQA,
                   work_dir: str | Path) -> ExtractiveTrainJob:
    key = fingerprint("extractive-qa-v1", name_or_path_key(base_model), validated.fingerprint, data,
                      spec.model_dump(exclude={"model"}))
    return ExtractiveTrainJob(base_model=base_model, validated=validated, data=data, spec=spec,
                              output_dir=str(Path(work_dir) / "runs" / key))


def window_settings(data: QAData, spec: ExtractiveQA) -> WindowSettings:
    return WindowSettings(max_length=data.max_length, doc_stride=spec.doc_stride, n_best_size=spec.n_best_size,
                          max_answer_length=spec.max_answer_length)


def training_windows(validated: ValidatedData, data: QAData, tokenizer, settings: WindowSettings):
    """The training split as labelled windows (a datasets.Dataset) for the span head."""
    import datasets

    rows = validated.load("train", data.max_train_records).to_list()
    enc = windows(tokenizer, [r[data.question_field] for r in rows], [r[data.context_field] for r in rows], settings)
    spans = [(r[data.answers_field]["answer_start"][0],
              r[data.answers_field]["answer_start"][0] + len(r[data.answers_field]["text"][0])) for r in rows]
    starts, ends = span_labels(enc, spans, tokenizer.cls_token_id)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    return datasets.Dataset.from_dict({**{k: enc[k] for k in keys}, "start_positions": starts,
                                       "end_positions": ends}), len(rows)


def qa_job(recipe: QARecipe, base_model: str, validated: ValidatedData) -> TrainJob:
    """The recipe's trainer: SFT of a causal LM on prompt/completion (generative), or the span head (extractive)."""
    if recipe.generative is not None:
        g = recipe.generative
        return causal_job(base_model, validated, recipe.data, g.lora, g.training, recipe.work_dir)
    return extractive_job(base_model, validated, recipe.data, recipe.extractive, recipe.work_dir)


def train_extractive(job: ExtractiveTrainJob, callbacks: list | None = None) -> ExtractiveTrainingResult:
    """Train, or resume, or (when a finished model is already there) return the finished result."""
    import transformers
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, Trainer, set_seed

    from llm_finetune.training.totals import run_totals  # lazy: a TrainerCallback (imports transformers)

    out = Path(job.output_dir)
    model_dir = out / MODEL_DIR
    if (finished := finished_result(out, ExtractiveTrainingResult)) is not None:
        return finished

    params = job.spec.training
    set_seed(params.seed)
    tokenizer = AutoTokenizer.from_pretrained(job.base_model)
    settings = window_settings(job.data, job.spec)
    train, records = training_windows(job.validated, job.data, tokenizer, settings)
    transformers.logging.set_verbosity_error()  # the new span head is reported as missing weights
    model = AutoModelForQuestionAnswering.from_pretrained(job.base_model)
    precision = resolve_precision(params.precision)
    args = training_arguments(job.output_dir, params, precision)
    trainer = Trainer(model=model, args=args, train_dataset=train, processing_class=tokenizer, callbacks=callbacks,
                      data_collator=collator(tokenizer, settings.max_length, params.pad_to_max_length))
    totals = run_totals(trainer, TrainingTokenCounter(trainer.model))
    resume = last_complete_checkpoint(out / CHECKPOINTS_DIR)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    runtime = time.perf_counter() - start

    cls = [ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0 for ids in train["input_ids"]]
    result = ExtractiveTrainingResult(
        **trainer_result_fields(trainer, output, totals, runtime, resume, model_dir), records=records,
        windows=len(train), windows_without_answer=sum(s == c for s, c in zip(train["start_positions"], cls)))
    if trainer.is_world_process_zero():
        save_trained_model(trainer, tokenizer, out, result, write_extras=lambda d: write_serving_file(
            d, "question-answering", windows=asdict(settings)))
    return result


def main(argv: list[str] | None = None) -> None:
    run_entry_point(ExtractiveTrainJob, train_extractive, argv)


if __name__ == "__main__":
    main()

