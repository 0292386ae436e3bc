"""Sequence classification (text -> label) with transformers' Trainer: a full fine-tune, or LoRA (optionally on a
4-bit base) with the classification head trained in full; dynamic padding and length-grouped batches; resumable;
saves a plain, servable model (adapters merged into a full-precision reload of the base).

    python -m llm_finetune.training.classification --job job.json
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar, Literal

from llm_finetune.data.classification import TruncationRule, classification_dataset, label_ids
from llm_finetune.data.intake import ValidatedData
from llm_finetune.errors import MergeError
from llm_finetune.fingerprint import fingerprint, name_or_path_key
from llm_finetune.inference.classifier import load_classifier_tokenizer
from llm_finetune.recipes import ClassificationData, LoraSpec, TrainerParams
from llm_finetune.training.common import (
    TrainingTokenCounter,
    keep_4bit_layers_differentiable,
    load_base_model,
    parameter_counts,
    resolve_precision,
)
from llm_finetune.training.job import (
    ADAPTER_DIR,
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
    write_serving_file,
)

MERGE_TOLERANCE = 1e-3


class ClassificationTrainingResult(TrainingResult):
    precision: Literal["fp32", "bf16"]
    trainable_parameters: int
    total_parameters: int
    records: int
    truncated_records: int  # texts longer than max_length, cut by data.truncation
    quantized_layers: int  # 4-bit linear layers (QLoRA), 0 otherwise
    merge_max_abs_diff: float | None  # merged vs base+adapter logits (LoRA only)


class ClassificationTrainJob(TrainJob):
    """Everything a classification training process needs (JSON: crosses a process or container boundary)."""

    entry_module: ClassVar[str] = "llm_finetune.training.classification"
    input_paths: ClassVar[dict[str, str]] = {"base_model": "base_model", "data": "validated.path"}
    result_type: ClassVar[type[TrainingResult]] = ClassificationTrainingResult
    base_model: str
    validated: ValidatedData
    data: ClassificationData
    lora: LoraSpec
    params: TrainerParams

    @property
    def nproc_per_node(self) -> int:
        return self.params.nproc_per_node


def classification_job(base_model: str, validated: ValidatedData, data: ClassificationData, lora: LoraSpec,
                       params: TrainerParams, work_dir: str | Path) -> ClassificationTrainJob:
    """The job, in a folder named by the fingerprint of base model, checked data and every setting."""
    key = fingerprint("classification-v1", name_or_path_key(base_model), validated.fingerprint, data, lora, params)
    return ClassificationTrainJob(base_model=base_model, validated=validated, data=data, lora=lora, params=params,
                                  output_dir=str(Path(work_dir) / "runs" / key))


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer, model, trainer


def head_kwargs(data: ClassificationData, tokenizer) -> dict:
    """from_pretrained settings of a classification head for the recipe's labels."""
    id2label, label2id = label_ids(data)
    return {"num_labels": len(id2label), "id2label": id2label, "label2id": label2id,
            "pad_token_id": tokenizer.pad_token_id}


def load_classifier(base_model: str, data: ClassificationData, lora: LoraSpec, tokenizer, precision: str):
    """The model to train: base + a new head (seeded by the caller), 4-bit when asked, with LoRA adapters when
    enabled (the head is then trained in full through peft's modules_to_save)."""
    import transformers
    from transformers import AutoModelForSequenceClassification

    transformers.logging.set_verbosity_error()  # "score.weight newly initialized": expected, it is the new head
    model = load_base_model(base_model, lora, precision=precision, auto_class=AutoModelForSequenceClassification,
                            **head_kwargs(data, tokenizer))
    quantized = keep_4bit_layers_differentiable(model) if lora.quantization.load_in_4bit else 0
    if lora.enabled:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=lora.r, lora_alpha=lora.alpha,
                                                 lora_dropout=lora.dropout, target_modules=lora.target_modules,
                                                 bias="none"))
    return model, quantized


def collator(tokenizer, max_length: int, pad_to_max_length: bool):
    """Pads each batch to its longest record, or (the seed scripts' way) every record to max_length."""
    from transformers import DataCollatorWithPadding

    if pad_to_max_length:
        return DataCollatorWithPadding(tokenizer, padding="max_length", max_length=max_length)
    return DataCollatorWithPadding(tokenizer)


def training_arguments(output_dir: str | Path, p: TrainerParams, precision: str):
    """TrainingArguments of a Trainer run (classification, extractive QA); checkpoints under output_dir."""
    from transformers import TrainingArguments

    return TrainingArguments(**trainer_arguments(output_dir, p, precision),
                             train_sampling_strategy="group_by_length" if p.group_by_length else "random")


# ---------------------------------------------------------------------------------------------------------------
# Merge (LoRA) and the served model folder


def logits(model, batch: dict):
    import torch

    with torch.no_grad():
        return model(**batch).logits.float()


def merge_classifier(base_model: str, adapter_dir: Path, head: dict, batch: dict):
    """Base (full precision) + adapter merged into plain weights; MergeError unless the merged model computes what
    base + adapter compute."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(base_model, dtype=torch.float32, **head)
    adapted = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    expected = logits(adapted, batch)
    merged = adapted.merge_and_unload()
    diff = float((logits(merged, batch) - expected).abs().max())
    if diff > MERGE_TOLERANCE:
        raise MergeError(f"the merged classifier diverges from base+adapter: max |logit difference| {diff:.2e}")
    return merged, diff


def train_classifier(job: ClassificationTrainJob, callbacks: list | None = None) -> ClassificationTrainingResult:
    """Train, or resume, or (when a finished model is already there) return the finished result."""
    from transformers import Trainer, set_seed

    from llm_finetune.training.totals import run_totals  # lazy: a TrainerCallback (imports transformers)

    out = Path(job.output_dir)
    model_dir = out / MODEL_DIR
    if (finished := finished_result(out, ClassificationTrainingResult)) is not None:
        return finished

    set_seed(job.params.seed)  # also seeds the new head
    precision = resolve_precision(job.params.precision)
    tokenizer = load_classifier_tokenizer(job.base_model)
    train = classification_dataset(job.validated, "train", job.data, tokenizer, job.data.max_train_records)
    truncated = sum(train["truncated"])
    train = train.remove_columns(["truncated"])
    model, quantized = load_classifier(job.base_model, job.data, job.lora, tokenizer, precision)
    trainer = Trainer(model=model, args=training_arguments(job.output_dir, job.params, precision), train_dataset=train,
                      data_collator=collator(tokenizer, job.data.max_length, job.params.pad_to_max_length),
                      processing_class=tokenizer, callbacks=callbacks)
    totals = run_totals(trainer, TrainingTokenCounter(trainer.model))

    resume = last_complete_checkpoint(out / CHECKPOINTS_DIR)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    runtime = time.perf_counter() - start

    trainable, total = parameter_counts(trainer.model)
    result = ClassificationTrainingResult(
        **trainer_result_fields(trainer, output, totals, runtime, resume, model_dir), precision=precision,
        trainable_parameters=trainable, total_parameters=total, records=len(train), truncated_records=truncated,
        quantized_layers=quantized, merge_max_abs_diff=None,
    )
    if not trainer.is_world_process_zero():
        return result
    merged = None
    if job.lora.enabled:
        trainer.save_model(str(out / ADAPTER_DIR))
        batch = collator(tokenizer, job.data.max_length, False)(
            [{"input_ids": r["input_ids"], "attention_mask": r["attention_mask"]} for r in train.select(range(4))])
        merged, result.merge_max_abs_diff = merge_classifier(job.base_model, out / ADAPTER_DIR,
                                                             head_kwargs(job.data, tokenizer), batch)
    truncation = asdict(TruncationRule.of(job.data))
    save_trained_model(trainer, tokenizer, out, result, model=merged, write_extras=lambda d: write_serving_file(
        d, "text-classification", truncation=truncation))
    return result


def main(argv: list[str] | None = None) -> None:
    run_entry_point(ClassificationTrainJob, train_classifier, argv)


if __name__ == "__main__":
    main()
