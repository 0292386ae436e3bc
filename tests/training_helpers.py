"""Helpers for training tests: kill a real training process at its first complete checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from llm_finetune.training.job import last_complete_checkpoint


def kill_at_first_checkpoint(cmd: list[str], cwd: Path, checkpoints: Path, timeout_s: float = 240) -> int:
    """Start `cmd`, SIGKILL it once a complete checkpoint exists, and return that checkpoint's global step."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout_s
    while last_complete_checkpoint(checkpoints) is None:
        assert proc.poll() is None, "training ended before the first checkpoint"
        assert time.monotonic() < deadline, f"no checkpoint within {timeout_s:.0f} s"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = last_complete_checkpoint(checkpoints)
    return json.loads((killed_at / "trainer_state.json").read_text())["global_step"]


def step_weighted_mean_loss(loss_curve: list[dict]) -> float:
    """The mean loss per step of a curve whose entries cover every step once (each the mean since the entry before)."""
    total, last = 0.0, 0
    for point in loss_curve:
        total += point["loss"] * (point["step"] - last)
        last = point["step"]
    return total / last
