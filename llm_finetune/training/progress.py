"""Training progress as plain data, reported from a Trainer callback to whoever is watching (a flow, a log)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel


class TrainingProgress(BaseModel):
    step: int
    max_steps: int
    epoch: float | None = None
    loss: float | None = None

    @property
    def percent(self) -> float:
        return 100.0 * self.step / self.max_steps if self.max_steps > 0 else 0.0


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
