"""Run a training job as a local process: `python -m <entry> --job job.json`, or torchrun when nproc_per_node > 1.

The launcher holds the output folder's lock (a concurrent run waits, then reuses the result), relays the process's
output line by line, reports progress from the progress file, and returns the TrainingResult the process wrote.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from llm_finetune.fingerprint import locked
from llm_finetune.training.job import JOB_FILE, PROGRESS_FILE, RESULT_FILE, TrainingResult, TrainJob, finished_result
from llm_finetune.training.progress import TrainingProgress, read_progress

LOG_FILE = "train.log"
# Library deprecation notices (transformers, TRL) say nothing about the run; PYTHONWARNINGS set by the user wins.
QUIET_WARNINGS = "ignore::FutureWarning,ignore::DeprecationWarning"


class TrainingProcessError(RuntimeError):
    """The training process exited with an error; the message carries the end of its output."""


def command(job: TrainJob, job_file: Path) -> list[str]:
    return entry_command(job.entry_module, job_file, nproc_per_node=job.nproc_per_node)


def entry_command(entry_module: str, job_file: str | Path, *, nproc_per_node: int = 1, nnodes: int = 1,
                  node_rank: int = 0, master_addr: str | None = None, master_port: int = 29500) -> list[str]:
    """`python -m <entry> --job FILE`, under torchrun when several processes train (on one machine or several)."""
    tail = ["-m", entry_module, "--job", str(job_file)]
    if nnodes > 1:
        return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}", f"--node_rank={node_rank}",
                f"--nproc_per_node={nproc_per_node}", f"--master_addr={master_addr}", f"--master_port={master_port}",
                *tail]
    if nproc_per_node > 1:  # torchrun picks gloo on CPU, NCCL on GPUs
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
                *tail]
    return [sys.executable, *tail]


def die_with_parent() -> None:
    """Linux: the training process gets SIGTERM if the flow process dies, instead of training on as an orphan."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_training_process(
    job: TrainJob,
    *,
    on_progress: Callable[[TrainingProgress], None] | None = None,
    on_output: Callable[[str], None] | None = None,
    poll_s: float = 1.0,
) -> TrainingResult:
    """Train (or resume, or reuse a finished run) in a child process; raise TrainingProcessError if it fails."""
    out = Path(job.output_dir)
    with locked(out):
        if (finished := finished_result(out, job.result_type)) is not None:
            return finished
        out.mkdir(parents=True, exist_ok=True)
        (out / JOB_FILE).write_text(job.model_dump_json(indent=2))
        (out / PROGRESS_FILE).unlink(missing_ok=True)
        tail: deque[str] = deque(maxlen=40)
        lines: queue.Queue[str | None] = queue.Queue()
        with open(out / LOG_FILE, "a") as log:
            proc = subprocess.Popen(
                command(job, out / JOB_FILE), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                env={"PYTHONWARNINGS": QUIET_WARNINGS, **os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True, preexec_fn=die_with_parent,
            )

            def pump() -> None:
                for line in proc.stdout:
                    log.write(line)
                    lines.put(line.rstrip("\n"))
                lines.put(None)

            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            try:
                _follow(proc, lines, tail, out / PROGRESS_FILE, on_progress, on_output, poll_s)
            except BaseException:  # cancelled or interrupted: take the whole process group down with us
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
                raise
            reader.join()
        if proc.returncode < 0:  # killed: its last lines are training progress, not a reason
            raise TrainingProcessError(f"training process killed by {signal.Signals(-proc.returncode).name}; its "
                                       f"log: {out / LOG_FILE}")
        if proc.returncode != 0:
            raise TrainingProcessError(
                f"training exited with code {proc.returncode}; log: {out / LOG_FILE}\nlast lines:\n" + "\n".join(tail)
            )
        return job.result_type.model_validate_json((out / RESULT_FILE).read_text())


def _follow(proc, lines, tail, progress_file, on_progress, on_output, poll_s) -> None:
    last: TrainingProgress | None = None
    done = False
    while not done:
        try:
            line = lines.get(timeout=poll_s)
        except queue.Empty:
            line = ""
        if line is None:
            done = True
        elif line:
            tail.append(line)
            if on_output and not line.startswith('{"model_dir"'):  # the result JSON: returned, not logged
                on_output(line)
        progress = read_progress(progress_file)
        if on_progress and progress is not None and progress != last:
            on_progress(progress)
            last = progress
    proc.wait()
