"""Fine-tune an encoder-decoder model with Seq2SeqTrainer; resumable from its last checkpoint.

Run as a module for subprocess/container use:
    python -m llm_finetune.training.seq2seq --job job.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar

from llm_finetune.fingerprint import fingerprint, name_or_path_key
from llm_finetune.recipes import Seq2SeqTrainingParams
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
    trainer_arguments,
    trainer_result_fields,
)

PROMPT_FILE = "llmft_prompt.json"


class Seq2SeqTrainJob(TrainJob):
    """Everything a seq2seq training process needs; JSON, so it can cross a process or container boundary."""

    entry_module: ClassVar[str] = "llm_finetune.training.seq2seq"
    result_type: ClassVar[type[TrainingResult]] = TrainingResult
    input_paths: ClassVar[dict[str, str]] = {"base_model": "base_model", "dataset": "dataset_dir"}
    base_model: str
    dataset_dir: str
    prompt_template: str
    params: Seq2SeqTrainingParams


def seq2seq_job(base_model: str, prepared_dataset: str, dataset_fingerprint: str, prompt_template: str,
                params: Seq2SeqTrainingParams, work_dir: str | Path) -> Seq2SeqTrainJob:
    """The job, in a folder named by the fingerprint of base model, tokenized data and hyperparameters."""
    key = fingerprint("seq2seq-v1", name_or_path_key(base_model), dataset_fingerprint, prompt_template, params)
    return Seq2SeqTrainJob(base_model=base_model, dataset_dir=prepared_dataset, prompt_template=prompt_template,
                           params=params, output_dir=str(Path(work_dir) / "runs" / key))


def train_seq2seq(job: Seq2SeqTrainJob, callbacks: list | None = None) -> TrainingResult:
    """Train, or resume, or (when a finished model is already there) return the finished result.

    Runs in every torchrun worker; only rank 0 writes the model and the result. Callers that may run concurrently on
    one output folder hold `fingerprint.locked(output_dir)` (llm_finetune.backends.local does).
    """
    import datasets
    from transformers import (
        AutoModelForSeq2SeqLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Seq2SeqTrainer,
        Seq2SeqTrainingArguments,
        set_seed,
    )

    from llm_finetune.training.totals import run_totals  # lazy: a TrainerCallback (imports transformers)

    out = Path(job.output_dir)
    model_dir = out / MODEL_DIR
    if (finished := finished_result(out)) is not None:
        return finished

    p = job.params
    set_seed(p.seed)
    tokenizer = AutoTokenizer.from_pretrained(job.base_model)
    model = AutoModelForSeq2SeqLM.from_pretrained(job.base_model)
    ds = datasets.load_from_disk(job.dataset_dir)
    args = Seq2SeqTrainingArguments(**trainer_arguments(out, p, resolve_precision(p.precision)),
                                    train_sampling_strategy="group_by_length" if p.group_by_length else "random")
    trainer = Seq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=ds["train"],
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    totals = run_totals(trainer, TrainingTokenCounter(trainer.model))  # encoder and decoder tokens
    resume = last_complete_checkpoint(out / CHECKPOINTS_DIR)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    runtime = time.perf_counter() - start

    result = TrainingResult(**trainer_result_fields(trainer, output, totals, runtime, resume, model_dir))
    if trainer.is_world_process_zero():
        save_trained_model(trainer, tokenizer, out, result, write_extras=lambda d: (d / PROMPT_FILE).write_text(
            json.dumps({"prompt_template": job.prompt_template})))
    return result


def main(argv: list[str] | None = None) -> None:
    run_entry_point(Seq2SeqTrainJob, train_seq2seq, argv)


if __name__ == "__main__":
    main()
