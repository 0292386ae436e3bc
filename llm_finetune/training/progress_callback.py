"""The trainer callback that reports training progress (llm_finetune.training.progress), apart from it so that
reading progress never imports transformers."""

from __future__ import annotations

import time
from collections.abc import Callable

from transformers import TrainerCallback

from llm_finetune.training.progress import TrainingProgress


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
