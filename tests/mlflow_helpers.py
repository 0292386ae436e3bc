"""Helpers for tests against an MLflow tracking server: a real `mlflow server` on loopback, a stand-in for a SageMaker
managed MLflow front door that checks each request's SigV4 signature before passing it on (in front of any HTTP API:
before moto, it shows who signed a run's AWS requests), and MLflow's log records."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SIGV4 = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/"
                   r"aws4_request, SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


@contextmanager
def mlflow_server(folder: Path, artifact_root: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`mlflow server` on a free loopback port, runs and registry in SQLite under folder, artifacts written by the
    clients themselves to artifact_root (no artifact proxy: as a SageMaker managed server, whose clients write to its
    S3 bucket); yields its URL and stops its process group."""
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as probe:
        port = probe.server_address[1]
    log = (folder / "mlflow-server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--default-artifact-root", artifact_root,
         "--no-serve-artifacts"],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start; see {folder / 'mlflow-server.log'}") from None
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    problem: str | None  # why its signature does not hold; None when it does
    key: str | None  # the access key id in its signature's Credential scope


def signing_key(headers: dict[str, str]) -> str | None:
    """The access key id in a request's SigV4 Credential scope (who signed it), if it has one."""
    auth = SIGV4.fullmatch({name.lower(): value for name, value in headers.items()}.get("authorization", ""))
    return auth["key"] if auth else None


def sigv4_problem(method: str, path: str, headers: dict[str, str], body: bytes, identities: Sequence[Credentials],
                  region: str, service: str) -> str | None:
    """Why a received request is not signed by one of `identities` for region and service (SigV4), recomputed with
    botocore's signer from the headers the request says it signed; None when the signature holds."""
    headers = {name.lower(): value for name, value in headers.items()}  # the signer lists them in lower case
    auth = SIGV4.fullmatch(headers.get("authorization", ""))
    if not auth:
        return f"no SigV4 Authorization header: {headers.get('authorization')!r}"
    credentials = next((c for c in identities if c.access_key == auth["key"]), None)
    if credentials is None or (auth["region"], auth["service"]) != (region, service):
        return f"credential scope {auth['key']}/{auth['region']}/{auth['service']}"
    if headers.get("x-amz-content-sha256") != hashlib.sha256(body).hexdigest():
        return "X-Amz-Content-SHA256 is not the body's hash"
    signed = {name: headers[name] for name in auth["signed"].split(";") if name in headers}
    request = AWSRequest(method=method, url=f"http://{headers['host']}{path}", data=body, headers=signed)
    request.context["timestamp"] = headers.get("x-amz-date", "")
    signer = SigV4Auth(credentials, service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    return None if expected == auth["signature"] else "signature does not match"


@contextmanager
def signature_checking_proxy(upstream: str, identities: Sequence[Credentials], region: str,
                             service: str) -> Iterator[tuple[str, list[SeenRequest]]]:
    """A loopback front door for `upstream` that records every request with its signature check (against the one of
    `identities` whose access key signed it) and who signed it, and passes it on (the check does not refuse: the test
    asserts on what was seen); yields (its URL, the requests seen)."""
    seen: list[SeenRequest] = []
    target = upstream.removeprefix("http://")

    class Handler(BaseHTTPRequestHandler):
        def _pass_on(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = dict(self.headers.items())
            seen.append(SeenRequest(self.command, self.path, headers,
                                    sigv4_problem(self.command, self.path, headers, body, identities, region,
                                                  service), signing_key(headers)))
            conn = http.client.HTTPConnection(target, timeout=120)
            try:
                conn.request(self.command, self.path, body=body or None,
                             headers={k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP})
                response = conn.getresponse()
                data = response.read()
            finally:
                conn.close()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            if self.command == "HEAD":  # no body; its length is the resource's (S3 HeadObject's object size)
                self.send_header("Content-Length", response.getheader("Content-Length", "0"))
                self.end_headers()
                return
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = _pass_on

        def log_message(self, *args):  # no access log on the test's stderr
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def mlflow_log_records() -> Iterator[list[logging.LogRecord]]:
    """Every record MLflow's loggers emit meanwhile (they do not propagate to the root logger pytest captures)."""
    handler, logger = _Records(), logging.getLogger("mlflow")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
