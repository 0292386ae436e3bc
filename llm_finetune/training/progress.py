"""Training progress as plain data, reported from a Trainer callback to whoever is watching (a flow, a log)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel
from transformers import TrainerCallback


class TrainingProgress(BaseModel):
    step: int
    max_steps: int
    epoch: float | None = None
    loss: float | None = None

    @property
    def percent(self) -> float:
        return 100.0 * self.step / self.max_steps if self.max_steps > 0 else 0.0


class ProgressCallback(TrainerCallback):
    """Calls `report` at most every `min_interval_s` seconds, at every logging step, and at the end."""

    def __init__(self, report: Callable[[TrainingProgress], None], min_interval_s: float = 2.0):
        self.report = report
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._loss: float | None = None

    def _send(self, state, force: bool = False) -> None:
        if not state.is_world_process_zero:
            return
        now = time.monotonic()
        if force or now - self._last >= self.min_interval_s:
            self._last = now
            self.report(TrainingProgress(step=state.global_step, max_steps=state.max_steps, epoch=state.epoch,
                                         loss=self._loss))

    def on_step_end(self, args, state, control, **kwargs):
        self._send(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self._loss = float(logs["loss"])
            self._send(state, force=True)

    def on_train_end(self, args, state, control, **kwargs):
        self._send(state, force=True)


def progress_file_reporter(path: Path) -> Callable[[TrainingProgress], None]:
    """Report progress by rewriting a small JSON file atomically (read by whoever launched the process)."""

    def report(progress: TrainingProgress) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(progress.model_dump_json())
        tmp.replace(path)

    return report


def read_progress(path: Path) -> TrainingProgress | None:
    try:
        return TrainingProgress.model_validate_json(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
