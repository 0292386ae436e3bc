"""Test helpers for HTTP servers: raw requests that return any status, and an ASGI app served in a thread."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from llm_finetune.serving.server import bind
from tests.serving_helpers import wait_until


def request(url: str, method: str, path: str, body: bytes | Iterable[bytes] | None = None,
            headers: dict | None = None) -> tuple[int, object]:
    """(status, parsed JSON body) for any status; an iterable body goes out chunked, without Content-Length."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        raw = response.read()
        assert response.getheader("Content-Type", "").startswith("application/json"), raw
        return response.status, json.loads(raw)
    finally:
        conn.close()


def invoke(url: str, payload) -> tuple[int, object]:
    return request(url, "POST", "/invocations", json.dumps(payload).encode())


def assert_still_serving(url: str) -> None:
    """/ping answers 200 and a valid request gets summaries."""
    assert request(url, "GET", "/ping") == (200, {"status": "healthy"})
    status, body = invoke(url, {"inputs": "#Person1#: Hi.\n#Person2#: Hello.", "parameters": {"max_new_tokens": 4}})
    assert status == 200 and len(body) == 1 and "summary_text" in body[0], body


@contextmanager
def serving_in_thread(app) -> Iterator[str]:
    """A real uvicorn server on a free loopback port, in this process; yields its URL."""
    import uvicorn

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def send_and_hang_up(url: str, path: str, body: bytes, *, content_length: int | None = None,
                     until: Callable[[], bool] = lambda: True, timeout_s: float = 30.0) -> None:
    """POST `body` under a Content-Length of `content_length` (default its length), wait until `until()` holds and
    close the connection unanswered: a client that goes away."""
    parts = urlsplit(url)
    head = (f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body) if content_length is None else content_length}\r\n\r\n")
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as sock:
        sock.sendall(head.encode() + body)
        wait_until(until, timeout_s)
