"""Start/stop a local endpoint process. Its client (`EndpointClient`, kept here for callers) lives in
llm_finetune.serving.client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pydantic import BaseModel

from llm_finetune.recipes.base import DEFAULT_MAX_BODY_BYTES
from llm_finetune.serving.client import EndpointError
from llm_finetune.serving.client import HttpInferenceClient as EndpointClient


class EndpointHandle(BaseModel):
    url: str
    pid: int
    model_dir: str
    log_path: str


def start_local_endpoint(
    model_dir: str | Path,
    host: str,
    port: int,
    log_path: str | Path,
    timeout_s: float = 180.0,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    server_args: tuple[str, ...] = (),
) -> EndpointHandle:
    """Launch the server in its own process group and wait until /ping answers 200.

    `model_dir` may also be a registry URI (models:/NAME@ALIAS); `server_args` are further server flags
    (`--max-batch-size 8`); the bearer token, if any, travels in the environment (LLMFT_ENDPOINT_TOKEN)."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_finetune.serving.server", "--model", str(model_dir), "--host", host,
         "--port", str(port), "--max-body-bytes", str(max_body_bytes), *server_args],
        stdout=subprocess.PIPE,
        stderr=log,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log.close()
    ready: dict[str, int] = {}

    def read_port() -> None:
        for line in proc.stdout:
            text = line.decode(errors="replace").strip()
            if text.startswith("LISTENING "):
                ready["port"] = int(text.split()[1])
                break

    reader = threading.Thread(target=read_port, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if "port" in ready:
            handle = EndpointHandle(
                url=f"http://{host}:{ready['port']}", pid=proc.pid, model_dir=str(model_dir), log_path=str(log_path)
            )
            if EndpointClient(handle.url).ping():
                return handle
        if proc.poll() is not None:
            raise EndpointError(f"endpoint exited with code {proc.returncode} before it was ready; see {log_path}")
        time.sleep(0.2)
    _kill_group(proc.pid)
    raise EndpointError(f"endpoint not ready after {timeout_s:.0f}s; see {log_path}")


def _kill_group(pid: int, grace_s: float = 10.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (another process started it): probe instead
            finished = 0 if _alive(pid) else pid
        if finished:
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def stop_local_endpoint(handle: EndpointHandle) -> None:
    _kill_group(handle.pid)


__all__ = ["DEFAULT_MAX_BODY_BYTES", "EndpointClient", "EndpointError", "EndpointHandle", "EndpointTestCase",
           "start_local_endpoint", "stop_local_endpoint"]
