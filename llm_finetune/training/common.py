"""What every trainer entry point shares: the result it reports and how it finds a checkpoint to resume from."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel


class TrainingResult(BaseModel):
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
