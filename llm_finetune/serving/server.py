"""SageMaker-protocol inference server (FastAPI on uvicorn): GET /ping, POST /invocations.

Request (as Hugging Face's SageMaker containers): {"inputs": "text" | ["t1", ...], "parameters": {...}}, where
`parameters` takes the fields of llm_finetune.generation.GenerationParams. Response in the model's served kind
(llm_finetune.serving.kinds): [{"summary_text": "..."}, ...] for text2text-generation, [{"generated_text": "..."}]
for text-generation.
Every error is JSON {"error": "..."}: 400 bad request (names the field), 404 no route, 405 wrong method,
413 body over --max-body-bytes, 500 generation failed (the server keeps serving).

    python -m llm_finetune.serving.server --model-dir DIR [--host 127.0.0.1] [--port 8080] [--max-body-bytes N]

With --port 0 the OS picks a free port; the server prints 'LISTENING <port>' on stdout once it is ready.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
from typing import Protocol

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from llm_finetune.generation import GenerationParams
from llm_finetune.serving.endpoint import DEFAULT_MAX_BODY_BYTES
from llm_finetune.serving.kinds import RequestError

logger = logging.getLogger("llm_finetune.serving")


class InvocationError(ValueError):
    """A request refused with 400; the message names each bad field."""


class BodyTooLargeError(ValueError):
    """A request body over the server's limit (413)."""


class Invocation(BaseModel):
    """The body of POST /invocations."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[str] = Field(description="One input text (a dialogue, a prompt), or a list of them")
    parameters: GenerationParams = Field(default_factory=GenerationParams)

    @field_validator("inputs", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        v = [v] if isinstance(v, str) else v
        if not isinstance(v, list) or not v or not all(isinstance(d, str) and d.strip() for d in v):
            raise PydanticCustomError(
                "inputs", "must be a non-empty string or a non-empty list of non-empty strings"
            )
        return v

    @field_validator("parameters", mode="before")
    @classmethod
    def _null_is_defaults(cls, v):
        return {} if v is None else v


class Generate(Protocol):
    output_key: str

    def generate(self, inputs: list[str], generation: GenerationParams) -> list[str]: ...


def parse_invocation(body: bytes) -> Invocation:
    """The validated request, or InvocationError naming every bad field ('parameters.num_beams: ...')."""
    try:
        return Invocation.model_validate_json(body)
    except ValidationError as e:
        problems = [f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors()]
        raise InvocationError("; ".join(problems)) from None


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, or BodyTooLargeError if Content-Length or the bytes actually sent exceed max_bytes."""
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > max_bytes
    message = f"request body is over the limit of {max_bytes} bytes (--max-body-bytes)"
    if too_large and request.headers.get("expect", "").lower() == "100-continue":
        raise BodyTooLargeError(message)  # the client waits for our answer before it sends the body
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        too_large = too_large or size > max_bytes
        if not too_large:
            chunks.append(chunk)
    # Read to the end even when too large (keeping nothing): a client still sending would see a reset, not the 413.
    if too_large:
        raise BodyTooLargeError(message)
    return b"".join(chunks)


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(generator: Generate, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    """The endpoint around any object with `generate(inputs, generation)` and the `output_key` of its kind."""
    app = FastAPI(title="llm-finetune endpoint", docs_url=None, redoc_url=None, openapi_url=None)
    lock = threading.Lock()
    # Served kinds with their own request format (question-answering, text-classification: serving/kinds.py) bring
    # their parser and answer; the generation kinds use Invocation.
    parse = getattr(generator, "parse_request", parse_invocation)

    def generate(invocation) -> list:
        with lock:  # one generate at a time: torch already uses every core
            if hasattr(generator, "respond"):
                return generator.respond(invocation)
            return [{generator.output_key: t} for t in generator.generate(invocation.inputs, invocation.parameters)]

    @app.get("/ping")
    def ping() -> dict:
        return {"status": "healthy"}

    @app.post("/invocations")
    async def invocations(request: Request):
        try:
            invocation = parse(await read_body(request, max_body_bytes))
        except BodyTooLargeError as e:
            return _error(413, str(e))
        except (InvocationError, RequestError) as e:
            return _error(400, str(e))
        try:
            return await run_in_threadpool(generate, invocation)
        except Exception as e:  # the model's failure is this request's 500, not the server's end
            logger.exception("generation failed")
            return _error(500, f"generation failed: {type(e).__name__}: {e}")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}", exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 lets the OS pick one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


class _AnnouncingServer(uvicorn.Server):
    """Prints 'LISTENING <port>' once uvicorn accepts connections."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and sockets:
            print(f"LISTENING {sockets[0].getsockname()[1]}", flush=True)
            # The launcher stops reading stdout after that line; a full pipe would block the server.
            os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def serve(model_dir: str, host: str = "127.0.0.1", port: int = 8080,
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
    from llm_finetune.serving.kinds import load_text_model

    app = create_app(load_text_model(model_dir), max_body_bytes=max_body_bytes)
    sock = bind(host, port)
    config = uvicorn.Config(app, log_level="info", access_log=False, timeout_graceful_shutdown=10)
    _AnnouncingServer(config).run(sockets=[sock])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SageMaker-protocol text-generation / summarization server")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                        help=f"larger request bodies get 413 (default {DEFAULT_MAX_BODY_BYTES})")
    args = parser.parse_args(argv)
    if args.max_body_bytes <= 0:
        parser.error(f"--max-body-bytes must be > 0, got {args.max_body_bytes}")
    serve(args.model_dir, args.host, args.port, args.max_body_bytes)


if __name__ == "__main__":
    main()
