"""Helpers for training tests: kill a real training process right after its first complete checkpoint."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from llm_finetune.training.job import last_complete_checkpoint

HERE = Path(__file__).parent


def kill_at_first_checkpoint(cmd: list[str], cwd: Path, checkpoints: Path, timeout_s: float = 240) -> int:
    """Run `cmd` (`python -m ENTRY ...`) so that it is SIGKILLed right after its first checkpoint is saved, and
    return that checkpoint's global step. The process kills itself (tests/die_after_first_checkpoint.py): polling
    from outside raced a fast machine, which trained to the end between two looks."""
    python, flag, module, *rest = cmd
    assert flag == "-m", f"expected `python -m ENTRY ...`, got {cmd}"
    proc = subprocess.run([python, str(HERE / "die_after_first_checkpoint.py"), module, *rest], cwd=cwd,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=timeout_s)
    assert proc.returncode == -signal.SIGKILL, f"training was not killed (exit {proc.returncode}): {proc.stderr[-2000:]}"
    killed_at = last_complete_checkpoint(checkpoints)
    assert killed_at is not None, "killed without a complete checkpoint"
    return json.loads((killed_at / "trainer_state.json").read_text())["global_step"]


def step_weighted_mean_loss(loss_curve: list[dict]) -> float:
    """The mean loss per step of a curve whose entries cover every step once (each the mean since the entry before)."""
    total, last = 0.0, 0
    for point in loss_curve:
        total += point["loss"] * (point["step"] - last)
        last = point["step"]
    return total / last
