"""What crosses the boundary of a training process: the job in, the result and progress out.

Every trainer entry point reads one JSON job and writes into the job's output folder:
    python -m llm_finetune.training.<trainer> --job job.json        (also under torchrun or in a container)
        <output_dir>/progress.json   steps done / total, rewritten as training goes (rank 0)
        <output_dir>/result.json     TrainingResult, once the model is saved (rank 0)
        <output_dir>/model/          the trained model, marked complete last
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel

from llm_finetune.errors import DataValidationError
from llm_finetune.fingerprint import is_complete, mark_complete
from llm_finetune.kinds import SERVING_FILE
from llm_finetune.training.progress import progress_file_reporter

JOB_FILE, RESULT_FILE, PROGRESS_FILE, MODEL_DIR = "job.json", "result.json", "progress.json", "model"
CHECKPOINTS_DIR, ADAPTER_DIR = "checkpoints", "adapter"  # under output_dir


class TrainJob(BaseModel):
    """Base of every trainer's job; `entry_module` is the module run as `python -m` for it, `result_type` what it
    writes to result.json."""

    entry_module: ClassVar[str]
    result_type: ClassVar[type["TrainingResult"]]
    # Folders the trainer reads, by input name (a SageMaker channel) -> dotted field; a field naming no local folder
    # (a Hub id) is left as it is. The trainer writes into the field named by output_path.
    input_paths: ClassVar[dict[str, str]] = {}
    output_path: ClassVar[str] = "output_dir"
    output_dir: str

    @property
    def nproc_per_node(self) -> int:
        return getattr(getattr(self, "params", None), "nproc_per_node", 1)

    @property
    def backend(self) -> str:
        return getattr(getattr(self, "params", None), "backend", "local")


class TrainingResult(BaseModel):
    """What a trainer reports; trainers may add fields (a subclass named by their job's `result_type`)."""

    model_dir: str
    global_step: int
    train_loss: float | None
    loss_curve: list[dict]
    resumed_from_checkpoint: str | None
    train_runtime_s: float
    real_tokens: int
    padded_tokens: int
    tokens_per_second: float
    reused: bool = False
    fingerprint: str | None = None  # of base model, data and hyperparameters, when the caller keys runs by it


def finished_result(output_dir: str | Path, result_type: type[TrainingResult] | None = None) -> TrainingResult | None:
    """The result of a run whose model is complete, marked as reused; None otherwise. Its model_dir is the one under
    `output_dir`, wherever the run was trained: a work_dir that was moved or copied keeps reusing its runs."""
    out = Path(output_dir)
    if not is_complete(out / MODEL_DIR):
        return None
    result = (result_type or TrainingResult).model_validate_json((out / RESULT_FILE).read_text())
    return result.model_copy(update={"reused": True, "model_dir": str(out / MODEL_DIR)})


def save_trained_model(trainer, tokenizer, output_dir: str | Path, result: TrainingResult,
                       write_extras: Callable[[Path], None] | None = None, model=None) -> None:
    """Rank 0's last act: model and tokenizer in <output_dir>/model (a partial one from a killed run replaced), any
    extra files, the result; the model folder is marked complete last. `model` is saved instead of the trainer's
    (a LoRA adapter merged into its base)."""
    out = Path(output_dir)
    model_dir = out / MODEL_DIR
    if model_dir.exists():
        shutil.rmtree(model_dir)
    if model is None:
        trainer.save_model(str(model_dir))
    else:
        model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    if write_extras is not None:
        write_extras(model_dir)
    (out / RESULT_FILE).write_text(result.model_dump_json(indent=2))
    mark_complete(model_dir)


def summed_over_processes(values: list[int]) -> list[int]:
    """Per-process counts summed over every process of a torchrun job (each saw only its shard of the data)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    total = torch.tensor(values, dtype=torch.long, device=device)
    dist.all_reduce(total)
    return [int(v) for v in total.tolist()]


def trainer_result_fields(trainer, output, totals, runtime: float, resume: Path | None, model_dir: Path,
                          curve_keys: tuple[str, ...] = ("step", "loss")) -> dict:
    """The TrainingResult fields a Trainer-based entry point reports the same way, from its RunTotals
    (llm_finetune.training.totals): tokens and mean loss of the whole run, resumes included, tokens summed over the
    processes of a torchrun job; tokens per second of this process run; `curve_keys` of each logged loss."""
    counts = totals.counts()
    trained_now = counts["real_tokens"] - totals.restored["real_tokens"]
    return dict(
        model_dir=str(model_dir), global_step=output.global_step, train_loss=totals.mean_loss(output),
        loss_curve=[{k: h[k] for k in curve_keys if k in h} for h in trainer.state.log_history
                    if "loss" in h and "step" in h],
        resumed_from_checkpoint=str(resume) if resume else None, train_runtime_s=runtime,
        real_tokens=counts["real_tokens"], padded_tokens=counts["padded_tokens"],
        tokens_per_second=trained_now / runtime if runtime > 0 else 0.0)


def write_serving_file(model_dir: Path, kind: str, **settings) -> None:
    """The served kind and the settings serving must share with training (read by llm_finetune.kinds)."""
    (model_dir / SERVING_FILE).write_text(json.dumps({"kind": kind, **settings}, indent=2))


def trainer_arguments(output_dir: str | Path, p, precision: str) -> dict:
    """The TrainingArguments every Trainer-based entry point shares, from its params (epochs, max_steps,
    learning_rate, batch size, warmup: a fraction of all steps if < 1 else steps, weight_decay, logging, checkpoint
    cadence, seed); checkpoints under output_dir/checkpoints, on the GPU when there is one."""
    import torch

    return dict(
        output_dir=str(Path(output_dir) / CHECKPOINTS_DIR),
        num_train_epochs=p.epochs,
        max_steps=p.max_steps,
        learning_rate=p.learning_rate,
        per_device_train_batch_size=p.per_device_train_batch_size,
        gradient_accumulation_steps=p.gradient_accumulation_steps,
        warmup_steps=p.warmup if p.warmup < 1 else int(p.warmup),
        weight_decay=p.weight_decay,
        logging_steps=p.logging_steps,
        save_strategy="steps",
        save_steps=p.save_steps,
        save_total_limit=p.save_total_limit,
        seed=p.seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=precision == "bf16",
        torch_compile=p.compile,
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )


def last_complete_checkpoint(checkpoints_dir: Path) -> Path | None:
    """Newest checkpoint-N that has both trainer state and weights (a run killed mid-save leaves partial ones).

    Weights are a full model (model.safetensors, pytorch_model*.bin) or a peft adapter (adapter_model.safetensors).
    """
    if not checkpoints_dir.is_dir():
        return None
    candidates = sorted(
        (p for p in checkpoints_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
        reverse=True,
    )
    for ckpt in candidates:
        has_weights = any(ckpt.glob("*.safetensors")) or any(ckpt.glob("pytorch_model*.bin"))
        if (ckpt / "trainer_state.json").exists() and has_weights:
            return ckpt
    return None


def run_entry_point(job_type: type[TrainJob], train: Callable[..., TrainingResult], argv: list[str] | None) -> None:
    """`--job job.json` -> train with progress written beside the results -> the result as JSON on stdout (rank 0).

    Bad data found by the trainer ends the process with the records to fix and exit status 1, without a traceback.
    """
    parser = argparse.ArgumentParser(description=f"Run a {job_type.__name__} (JSON) to completion")
    parser.add_argument("--job", required=True, help=f"Path to a {job_type.__name__} JSON file")
    args = parser.parse_args(argv)
    job = job_type.model_validate_json(Path(args.job).read_text())  # a bad job fails before the heavy imports

    from llm_finetune.training.progress_callback import ProgressCallback  # lazy: imports transformers

    reporter = progress_file_reporter(Path(job.output_dir) / PROGRESS_FILE)
    try:
        result = train(job, callbacks=[ProgressCallback(reporter)])
    except DataValidationError as e:
        sys.exit(str(e))
    if int(os.environ.get("RANK", "0")) == 0:
        print(result.model_dump_json())
