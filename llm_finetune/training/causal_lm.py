"""Supervised fine-tuning of a causal LM on chat-formatted instructions with TRL's SFTTrainer: LoRA, QLoRA (4-bit
base) or a full fine-tune; resumable from its last checkpoint; saves the adapter and a merged, servable model.

Run as a module for subprocess/container use (one process, or one per device under torchrun):
    python -m llm_finetune.training.causal_lm --job job.json
    torchrun --nproc_per_node 2 -m llm_finetune.training.causal_lm --job job.json
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel

from llm_finetune.data.instructions import SFTDataReport, check_sft_records, prepare_tokenizer, render_ids
from llm_finetune.data.intake import ValidatedData
from llm_finetune.data.shapes import sft_examples
from llm_finetune.errors import MergeError, RecipeError
from llm_finetune.fingerprint import fingerprint, is_complete, name_or_path_key
from llm_finetune.recipes import InstructionData, LoraSpec, QAData, SFTParams
from llm_finetune.training.collators import PackedRowsCollator, packed_real_tokens
from llm_finetune.training.common import TrainingTokenCounter, load_base_model, parameter_counts, resolve_precision
from llm_finetune.training.job import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    MODEL_DIR,
    RESULT_FILE,
    TrainingResult,
    TrainJob,
    last_complete_checkpoint,
    run_entry_point,
    save_trained_model,
    trainer_arguments,
    trainer_result_fields,
)
from llm_finetune.training.labelled_logits import use_labelled_logits_on_cpu

MERGE_TOLERANCE = 1e-3  # max |logit difference| between merged and base+adapter, fp32
MERGE_CHECK_RECORDS = 4


class MergeCheck(BaseModel):
    """Merged model vs base + adapter on a fixed batch of training records."""

    max_abs_diff: float  # merged vs base+adapter logits: ~0 when the merge is right
    adapter_effect: float  # base+adapter vs base logits: > 0 when the adapter learned something
    tolerance: float
    records: int


class CausalTrainingResult(TrainingResult):
    adapter_dir: str | None  # None for a full fine-tune
    precision: Literal["fp32", "bf16"]
    trainable_parameters: int
    total_parameters: int
    loss_tokens: int  # tokens the loss was computed on (the responses, with completion-only loss)
    records: int  # training records given to the trainer
    truncated_records: int  # response cut short by max_length (trained without its end)
    dropped_records: int  # left out by TRL: no response token left to learn (see data_report for which)
    data_report: SFTDataReport
    merge: MergeCheck | None  # None for a full fine-tune


class CausalTrainJob(TrainJob):
    """Everything a training process needs; JSON-serialisable so it can cross a process or container boundary."""

    entry_module: ClassVar[str] = "llm_finetune.training.causal_lm"
    result_type: ClassVar[type[TrainingResult]] = CausalTrainingResult
    input_paths: ClassVar[dict[str, str]] = {"base_model": "base_model", "data": "validated.path"}
    base_model: str  # Hub id or local directory with model and tokenizer
    validated: ValidatedData  # checked splits from intake; the trainer reads validated.path
    data: InstructionData | QAData  # the shape (chat instructions, QA prompt/completion), max_length, limits
    output_dir: str
    lora: LoraSpec  # includes lora.quantization (QLoRA)
    params: SFTParams


# ---------------------------------------------------------------------------------------------------------------
# Devices, precision, processes


# ---------------------------------------------------------------------------------------------------------------
# Model, tokenizer, trainer


def load_tokenizer(base_model: str):
    """The base model's tokenizer with a chat template and a pad token distinct from EOS (see prepare_tokenizer)."""
    from transformers import AutoTokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(base_model))


# Model types whose attention ignores position_ids on CPU, so padding-free packed records attend to each other
# (STACK-NOTES: packed Falcon logits differ from per-record logits by 0.2-0.6).
PACKING_UNSAFE_MODEL_TYPES = frozenset({"falcon"})


def check_packing(base_model: str, params: SFTParams) -> None:
    """Refuse padding-free packing for a model whose packed records would silently attend to each other."""
    from transformers import AutoConfig

    if not params.packing:
        return
    model_type = AutoConfig.from_pretrained(base_model).model_type
    if model_type in PACKING_UNSAFE_MODEL_TYPES:
        raise RecipeError(f"training.packing: padding-free packing is not safe for {model_type} models (their "
                          f"attention ignores position_ids, so packed records would attend to each other); "
                          f"set training.packing=false")


def lora_config(lora: LoraSpec):
    from peft import LoraConfig

    return LoraConfig(
        task_type="CAUSAL_LM",
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        target_parameters=lora.target_parameters or None,
        bias="none",
    )


def sft_config(job: CausalTrainJob, precision: str):
    from trl import SFTConfig

    p = job.params
    return SFTConfig(
        **trainer_arguments(job.output_dir, p, precision),
        max_length=job.data.max_length,
        completion_only_loss=p.completion_only_loss,
        packing=p.packing,
        packing_strategy="bfd",  # padding-free; with use_cache=False (TRL sets it) records stay separate on CPU too
        fp16=False,
        activation_checkpointing=p.activation_checkpointing,
    )


VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")  # kernels that bound packed records without a mask


def packing_layout(params: SFTParams, model) -> Literal["rows", "flat"] | None:
    """How packed rows reach the model (None without packing): 'auto' is flat (TRL's padding-free, one row a batch)
    under a varlen flash-attention kernel, else rows (PackedRowsCollator: a block mask per row, not per batch)."""
    if not params.packing:
        return None
    if params.packing_layout != "auto":
        return params.packing_layout
    return "flat" if getattr(model.config, "_attn_implementation", None) in VARLEN_ATTENTION else "rows"


@functools.cache
def packed_rows_trainer_class():
    """SFTTrainer fed by PackedRowsCollator (TRL refuses a custom collator with packing, so it is swapped in after
    construction), counting real tokens without the row padding: without an attention mask TRL's own `num_tokens`
    would count one row's width per batch."""
    from trl import SFTTrainer

    class PackedRowsSFTTrainer(SFTTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.data_collator = PackedRowsCollator(self.processing_class.pad_token_id, self.args.pad_to_multiple_of)
            self._flops_per_token: float | None = None

        def floating_point_ops(self, inputs) -> float:
            """Trainer's estimate (6 x tokens x non-embedding parameters) with the parameters counted once: the
            default walks every parameter (through the PEFT wrapper) on every step."""
            tokens = inputs["input_ids"].numel()
            if self._flops_per_token is None:
                self._flops_per_token = super().floating_point_ops(inputs) / max(tokens, 1)
            return self._flops_per_token * tokens

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            counted = self._total_train_tokens
            output = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if self.model.training:
                real = packed_real_tokens(inputs["input_ids"], inputs["position_ids"],
                                          self.processing_class.pad_token_id).sum()
                self._total_train_tokens = counted + int(self.accelerator.gather_for_metrics(real).sum())
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            return output

    return PackedRowsSFTTrainer


def build_trainer(job: CausalTrainJob, model, tokenizer, train_dataset, callbacks: list | None = None):
    """TRL SFTTrainer for the job; a LoRA job gets its adapters here. Its train_dataset is tokenized and labelled.
    Packed rows go to the model as rows or flattened, by `packing_layout`."""
    from trl import SFTTrainer

    use_labelled_logits_on_cpu()

    trainer_class = packed_rows_trainer_class() if packing_layout(job.params, model) == "rows" else SFTTrainer
    return trainer_class(
        model=model,
        args=sft_config(job, resolve_precision(job.params.precision)),
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=lora_config(job.lora) if job.lora.enabled else None,
        callbacks=callbacks,
    )


# ---------------------------------------------------------------------------------------------------------------
# Merging and its check


def verification_batch(tokenizer, examples, max_length: int, n: int = MERGE_CHECK_RECORDS) -> dict:
    """The first n records rendered in full, cut at max_length, right-padded: a fixed batch to compare models on."""
    import torch

    rows = [render_ids(tokenizer, e["prompt"] + e["completion"])[:max_length] for e in examples.select(range(n))]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _logits(model, batch: dict):
    import torch

    with torch.no_grad():
        logits = model(**batch, use_cache=False).logits.float()
    return logits[batch["attention_mask"].bool()]  # real positions only


def check_merge(merged, batch: dict, *, adapted_logits, base_logits,
                tolerance: float = MERGE_TOLERANCE) -> MergeCheck:
    """Raise MergeError unless the merged model reproduces base+adapter logits and the adapter changes something."""
    merged_logits = _logits(merged, batch)
    check = MergeCheck(
        max_abs_diff=float((merged_logits - adapted_logits).abs().max()),
        adapter_effect=float((adapted_logits - base_logits).abs().max()),
        tolerance=tolerance,
        records=int(batch["input_ids"].shape[0]),
    )
    if check.adapter_effect <= tolerance:
        raise MergeError(
            f"the adapter changes no logit by more than {tolerance} (max {check.adapter_effect:.2e}): training left it "
            "at its initial state (lora_B = 0); check learning_rate, max_steps and that the loss has tokens to learn")
    if float((merged_logits - base_logits).abs().max()) <= tolerance:
        raise MergeError("the merge did nothing: the merged model computes the base model's logits, not the adapter's "
                         f"(base+adapter differs from base by up to {check.adapter_effect:.2e})")
    if check.max_abs_diff > tolerance:
        raise MergeError(f"the merged model diverges from base+adapter: max |logit difference| "
                         f"{check.max_abs_diff:.2e} > {tolerance}")
    return check


def merge_adapter(base_model: str, adapter_dir: str | Path, batch: dict,
                  tolerance: float = MERGE_TOLERANCE):
    """Base model + adapter merged into plain weights, and the check that it computes what base + adapter compute.

    The base is reloaded in full precision: merging into 4-bit weights (QLoRA) would round the update away.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    adapted_logits = _logits(adapted, batch)
    with adapted.disable_adapter():
        base_logits = _logits(adapted, batch)
    merged = adapted.merge_and_unload()
    return merged, check_merge(merged, batch, adapted_logits=adapted_logits, base_logits=base_logits,
                               tolerance=tolerance)


# ---------------------------------------------------------------------------------------------------------------
# Training


def causal_job(base_model: str, validated: ValidatedData, data: InstructionData | QAData, lora: LoraSpec,
               params: SFTParams, work_dir: str | Path) -> CausalTrainJob:
    """The job, in a folder named by the fingerprint of base model, checked data and every setting."""
    key = fingerprint("causal-sft-v1", name_or_path_key(base_model), validated.fingerprint, data, lora, params)
    return CausalTrainJob(base_model=base_model, validated=validated, data=data, lora=lora, params=params,
                          output_dir=str(Path(work_dir) / "runs" / key))


def train_causal_lm(job: CausalTrainJob, callbacks: list | None = None) -> CausalTrainingResult:
    """Train, or resume, or (when a finished model is already there) return the finished result.

    Runs in every torchrun worker; only rank 0 writes. Callers that may run concurrently on one output folder hold
    `fingerprint.locked(output_dir)` (llm_finetune.backends.local does; the workers of one job must not).
    """
    from transformers import set_seed

    from llm_finetune.training.totals import run_totals  # lazy: a TrainerCallback (imports transformers)

    out = Path(job.output_dir)
    model_dir = out / MODEL_DIR
    if is_complete(model_dir):
        return CausalTrainingResult.model_validate_json((out / RESULT_FILE).read_text()).model_copy(
            update={"reused": True})

    set_seed(job.params.seed)
    tokenizer = load_tokenizer(job.base_model)
    report = check_sft_records(job.validated, job.data, tokenizer)  # raises before the model is loaded
    check_packing(job.base_model, job.params)
    train_dataset = sft_examples(job.validated, "train", job.data, tokenizer, job.data.max_train_records)
    model = load_base_model(job.base_model, job.lora, precision=job.params.precision,
                            activation_checkpointing=job.params.activation_checkpointing,
                            attn_implementation=job.params.attn_implementation)
    trainer = build_trainer(job, model, tokenizer, train_dataset, callbacks)
    totals = run_totals(trainer, TrainingTokenCounter(trainer.model, tokenizer.pad_token_id))

    resume = last_complete_checkpoint(out / CHECKPOINTS_DIR)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    runtime = time.perf_counter() - start

    trainable, total = parameter_counts(trainer.model)
    # What TRL dropped, counted from its prepared dataset: records left without a trained token (completion-only
    # loss, response cut away). Packing keeps them (packed rows are not filtered).
    dropped = 0 if job.params.packing else len(train_dataset) - len(trainer.train_dataset)
    result = CausalTrainingResult(
        **trainer_result_fields(trainer, output, totals, runtime, resume, model_dir,
                                curve_keys=("step", "loss", "aux_loss", "num_tokens")),
        adapter_dir=str(out / ADAPTER_DIR) if job.lora.enabled else None,
        loss_tokens=totals.counts()["loss_tokens"],
        precision=resolve_precision(job.params.precision),
        trainable_parameters=trainable,
        total_parameters=total,
        records=len(train_dataset),
        truncated_records=report.splits["train"].truncated,
        dropped_records=dropped,
        data_report=report,
        merge=None,
    )
    if not trainer.is_world_process_zero():
        return result

    merged = None
    if job.lora.enabled:
        trainer.save_model(str(out / ADAPTER_DIR))  # adapter weights + config, and the tokenizer
        batch = verification_batch(tokenizer, train_dataset, job.data.max_length)
        merged, result.merge = merge_adapter(job.base_model, out / ADAPTER_DIR, batch)
        merged.generation_config.pad_token_id = tokenizer.pad_token_id
    save_trained_model(trainer, tokenizer, out, result, model=merged)
    return result


def main(argv: list[str] | None = None) -> None:
    run_entry_point(CausalTrainJob, train_causal_lm, argv)


if __name__ == "__main__":
    main()
