"""The peer endpoint of benchmarks/endpoint_load.py: `transformers serve --continuous-batching` on a model folder.

Its `serving` extra (openai, ...) goes into a venv of its own, `.llmft/bench/transformers-serve-venv`, created on
first use with the same transformers and torch versions as this environment (the project's venv stays as it is).
The server speaks OpenAI's API; the benchmark sends greedy `/v1/completions` requests. Its paged KV cache is sized
by --cb-num-blocks (blocks of 256 tokens): left unset on CPU it takes most of the machine's memory (14 GB seen).
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from llm_finetune.serving.endpoint import EndpointHandle

VENV = Path(__file__).resolve().parent.parent / ".llmft" / "bench" / "transformers-serve-venv"
NUM_BLOCKS = 128  # 32k tokens of KV cache: room for 64 requests of a few hundred tokens each


def serve_command() -> Path:
    """The venv's `transformers` command, installing the venv first if needed (offline: from the local index)."""
    command = VENV / "bin" / "transformers"
    if not command.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", f"transformers[serving]=={version('transformers')}",
                        f"torch=={version('torch').split('+')[0]}"], check=True)
    return command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False


def start_transformers_serve(model_dir: str, log_path: Path, timeout_s: float = 300.0) -> EndpointHandle:
    """`transformers serve MODEL_DIR --continuous-batching` on a free loopback port, once /health answers; stop it
    with llm_finetune.serving.endpoint.stop_local_endpoint."""
    port = free_port()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(serve_command()), "serve", model_dir, "--continuous-batching", "--device", "cpu", "--host",
             "127.0.0.1", "--port", str(port), "--cb-num-blocks", str(NUM_BLOCKS)],
            stdout=log, stderr=log, start_new_session=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    handle = EndpointHandle(url=f"http://127.0.0.1:{port}", pid=proc.pid, model_dir=model_dir,
                            log_path=str(log_path))
    deadline = time.monotonic() + timeout_s
    while not healthy(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"transformers serve did not start; see {log_path}")
        time.sleep(0.5)
    return handle
