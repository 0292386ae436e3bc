"""Causal-LM pretraining on packed blocks with transformers' Trainer (from scratch or continued); resumable from its
last complete checkpoint; every weight trains.

Run as a module for subprocess/container use (one process, or one per device under torchrun):
    python -m llm_finetune.training.pretrain --job job.json
    torchrun --nproc_per_node 2 -m llm_finetune.training.pretrain --job job.json
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import ClassVar, Literal

from llm_finetune.data.raw_text import DOCUMENTS_FILE, PackedBlocks
from llm_finetune.fingerprint import fingerprint, name_or_path_key
from llm_finetune.recipes import PretrainParams
from llm_finetune.training.common import TrainingTokenCounter, parameter_counts, resolve_precision
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


class PretrainingResult(TrainingResult):
    precision: Literal["fp32", "bf16"]
    parameters: int
    blocks: int
    block_size: int


class PretrainJob(TrainJob):
    """Everything a pretraining process needs; JSON, so it can cross a process or container boundary."""

    entry_module: ClassVar[str] = "llm_finetune.training.pretrain"
    input_paths: ClassVar[dict[str, str]] = {"base_model": "base_model", "data": "packed.path"}
    result_type: ClassVar[type[TrainingResult]] = PretrainingResult
    base_model: str  # Hub id or local directory with model and tokenizer (random weights when from scratch)
    packed: PackedBlocks  # the training blocks; their documents file is saved with the model
    params: PretrainParams


def documents_file(packed: PackedBlocks) -> Path:
    """The documents list beside the blocks (where a container finds it, its channel holding the dataset folder),
    else where an older cache kept it."""
    beside = Path(packed.path) / DOCUMENTS_FILE
    return beside if beside.exists() else Path(packed.documents_file)


def pretrain_job(base_model: str, packed: PackedBlocks, params: PretrainParams, work_dir: str | Path) -> PretrainJob:
    """The job, in a folder named by the fingerprint of base model, blocks and hyperparameters."""
    key = fingerprint("pretrain-v1", name_or_path_key(base_model), packed.fingerprint, params)
    return PretrainJob(base_model=base_model, packed=packed, params=params,
                       output_dir=str(Path(work_dir) / "runs" / key))


class BlockCollator:
    """Fixed-length blocks -> a batch whose labels are its inputs (the model shifts them). No padding and no
    masking: the EOS between documents is learned too (DataCollatorForLanguageModeling would mask it as padding
    when the pad token is EOS, as for GPT-2)."""

    def __call__(self, features: list[dict]) -> dict:
        import torch

        ids = torch.tensor([f["input_ids"] for f in features], dtype=torch.long)
        return {"input_ids": ids, "labels": ids.clone()}


def training_arguments(job: PretrainJob, precision: str):
    from transformers import TrainingArguments

    p = job.params
    return TrainingArguments(**trainer_arguments(job.output_dir, p, precision), lr_scheduler_type=p.lr_scheduler_type,
                             activation_checkpointing=p.activation_checkpointing, remove_unused_columns=False)


def train_pretraining(job: PretrainJob, callbacks: list | None = None) -> PretrainingResult:
    """Train, or resume, or (when a finished model is already there) return the finished result.

    Runs in every torchrun worker; only rank 0 writes. Callers that may run concurrently on one output folder hold
    `fingerprint.locked(output_dir)` (llm_finetune.backends.local does).
    """
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, set_seed

    from llm_finetune.training.totals import run_totals  # lazy: a TrainerCallback (imports transformers)

    out = Path(job.output_dir)
    model_dir = out / MODEL_DIR
    if (finished := finished_result(out, PretrainingResult)) is not None:
        return finished

    p = job.params
    set_seed(p.seed)
    precision = resolve_precision(p.precision)
    tokenizer = AutoTokenizer.from_pretrained(job.base_model)
    model = AutoModelForCausalLM.from_pretrained(job.base_model, dtype=torch.float32)
    model.config.use_cache = False  # training forward passes never decode; a cache only costs memory
    blocks = datasets.load_from_disk(job.packed.path)["train"]
    trainer = Trainer(model=model, args=training_arguments(job, precision), train_dataset=blocks,
                      data_collator=BlockCollator(), processing_class=tokenizer, callbacks=callbacks)
    totals = run_totals(trainer, TrainingTokenCounter(trainer.model))

    resume = last_complete_checkpoint(out / CHECKPOINTS_DIR)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    runtime = time.perf_counter() - start

    result = PretrainingResult(
        **trainer_result_fields(trainer, output, totals, runtime, resume, model_dir),
        precision=precision,
        parameters=parameter_counts(trainer.model)[1],
        blocks=len(blocks),
        block_size=job.packed.block_size,
    )
    if trainer.is_world_process_zero():
        trainer.model.config.use_cache = True  # the saved model generates
        save_trained_model(trainer, tokenizer, out, result, write_extras=lambda d: shutil.copy(
            documents_file(job.packed), d / DOCUMENTS_FILE))
    return result


def main(argv: list[str] | None = None) -> None:
    run_entry_point(PretrainJob, train_pretraining, argv)


if __name__ == "__main__":
    main()
