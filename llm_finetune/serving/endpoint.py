"""Start/stop a local endpoint process and talk to any SageMaker-protocol endpoint over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from pydantic import BaseModel

DEFAULT_MAX_BODY_BYTES = 1_000_000  # 1 MB: a batch of dialogues, far from a memory problem


class EndpointTestCase(BaseModel):
    """One request of an endpoint test: a validation record's input and its reference answer."""

    id: str
    inputs: str | dict[str, str]  # text, or {"question", "context"} for question-answering
    reference: str


class EndpointHandle(BaseModel):
    url: str
    pid: int
    model_dir: str
    log_path: str


class EndpointError(RuntimeError):
    pass


def start_local_endpoint(
    model_dir: str | Path,
    host: str,
    port: int,
    log_path: str | Path,
    timeout_s: float = 180.0,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> EndpointHandle:
    """Launch the server in its own process group and wait until /ping answers 200."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_finetune.serving.server", "--model-dir", str(model_dir), "--host", host,
         "--port", str(port), "--max-body-bytes", str(max_body_bytes)],
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


class EndpointClient:
    """Minimal client for /ping and /invocations (the path real SageMaker endpoints and local ones share)."""

    def __init__(self, url: str, timeout_s: float = 120.0):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def ping(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def invoke(self, payload: dict) -> list[dict] | dict:
        req = urllib.request.Request(
            f"{self.url}/invocations",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise EndpointError(f"{self.url}/invocations answered {e.code}: {e.read().decode(errors='replace')}") from None
