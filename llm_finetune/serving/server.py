"""SageMaker-protocol inference server (FastAPI on uvicorn) for every served kind (llm_finetune.kinds).

Routes: GET /ping; POST /invocations with `{"inputs": ..., "parameters": {...}}` (HF containers / TGI) or chat
`{"messages": [...], ...}`; POST /v1/chat/completions (TGI Messages API), optionally streamed (`"stream": true`:
server-sent `chat.completion.chunk` events, then `data: [DONE]`). Shapes: llm_finetune.serving.protocol.
Greedy text-generation requests join and leave one running batch between decode steps (--scheduler continuous, the
default: llm_finetune.serving.continuous); other requests with compatible settings that arrive together run as one
batched `generate` (llm_finetune.serving.batching), as every request does with --scheduler batches.
Every error is JSON {"error": "..."}: 400 bad request (names the field), 401 missing or wrong bearer token,
404 no route, 405 wrong method, 413 body over --max-body-bytes, 500 generation failed (the server keeps serving).
A client that closes the connection first (mid-upload, or while its answer is generated) is logged in one line;
its generation stops, streamed or not.

    python -m llm_finetune.serving.server --model DIR | models:/NAME/VERSION | models:/NAME@ALIAS
        [--host 127.0.0.1] [--port 8080] [--max-body-bytes N] [--max-batch-size 64] [--max-batch-wait-ms 10]
        [--scheduler continuous|batches] [--auth-token TOKEN] [--tracking-uri URI] [--cache-dir DIR]

Loopback by default; on any other address a bearer token is required (--auth-token or $LLMFT_ENDPOINT_TOKEN),
else the server refuses to start. With --port 0 the OS picks a free port; the server prints 'LISTENING <port>' on
stdout once it is ready.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import ipaddress
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from llm_finetune.errors import ApprovalRequiredError
from llm_finetune.generation import Completion, GenerationParams, Prompt
from llm_finetune.inference.served import Encoded, PromptRejected, RequestError, batch_key, load_text_model
from llm_finetune.kinds import ServedKind
from llm_finetune.recipes.base import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_BATCH_WAIT_MS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_SCHEDULER,
    SCHEDULERS,
    Scheduler,
)
from llm_finetune.serving.batching import Batcher
from llm_finetune.serving.client import TOKEN_ENV
from llm_finetune.serving.continuous import DECODE_FORWARDS, DecodeForward, continuous_batcher
from llm_finetune.serving.protocol import (  # noqa: F401  (InvocationError, parse_invocation: public here too)
    ChatAnswer,
    ChatRequest,
    Invocation,
    InvocationError,
    generated_item,
    parse_chat,
    parse_invocation,
    parse_request,
)
from llm_finetune.serving.streaming import TextPieces, cancel_criteria

logger = logging.getLogger("llm_finetune.serving")
INLINE_ENCODE_CHARS = 4096  # text prompts up to this many characters in all are tokenized in the event loop


class BodyTooLargeError(ValueError):
    """A request body over the server's limit (413)."""


class ServedModel(Protocol):
    """What the server needs of a model (llm_finetune.inference.served.TextModel)."""

    kind: ServedKind
    name: str
    output_key: str
    tokenizer: object

    def encode(self, prompts: list[Prompt], params: GenerationParams, max_length: int | None = None) -> Encoded: ...

    def complete(self, encoded: Encoded, params: GenerationParams, *, batch_size: int = 16,
                 **generate_extras) -> list[Completion]: ...


@dataclass
class Work:
    """One request's share of a batch; `cancelled` is set once its client has gone (or it is answered)."""

    encoded: Encoded
    params: GenerationParams
    generate_extras: dict = field(default_factory=dict)
    cancelled: threading.Event = field(default_factory=threading.Event)


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


async def client_gone(request: Request) -> None:
    """Returns once the client has closed the connection (await it after the request body has been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_client_goes(request: Request, answer: Awaitable):
    """The answer, or ClientDisconnect if the client closes the connection first; the answer is then cancelled
    (a generation stops at its next token: `Work.cancelled`)."""
    answering, watching = asyncio.ensure_future(answer), asyncio.ensure_future(client_gone(request))
    try:
        done, _ = await asyncio.wait({answering, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        answering.cancel()  # no-op once it is done
        watching.cancel()
    if answering in done:
        return answering.result()
    answering.add_done_callback(lambda t: t.cancelled() or t.exception())  # a failure now has nobody to tell
    raise ClientDisconnect()


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def bearer_token_check(token: str | None):
    """A FastAPI dependency: 401 unless the request carries `Authorization: Bearer <token>` (no-op without one)."""

    async def check(request: Request) -> None:
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token (header 'Authorization: Bearer <token>')",
                                headers={"WWW-Authenticate": "Bearer"})

    return check


def split_batch(model: ServedModel, batch_size: int):
    """The batcher's run function: one `complete` over every request's prompts, answers split per request."""

    def run(works: list[Work]) -> list[list[Completion]]:
        joined = Encoded.join([w.encoded for w in works])
        done = model.complete(joined, works[0].params, batch_size=batch_size, **works[0].generate_extras,
                              stopping_criteria=cancel_criteria(*(w.cancelled for w in works)))
        answers, start = [], 0
        for w in works:
            answers.append(done[start : start + len(w.encoded.ids)])
            start += len(w.encoded.ids)
        return answers

    return run


def create_app(model: ServedModel, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, *,
               max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, max_batch_wait_ms: float = DEFAULT_MAX_BATCH_WAIT_MS,
               scheduler: Scheduler = DEFAULT_SCHEDULER, auth_token: str | None = None,
               decode_forward: DecodeForward = "own") -> FastAPI:
    """The endpoint around a served model; requests are batched (max_batch_size 1: one prompt at a time).
    decode_forward (continuous scheduler): "own", the project's Llama forward where it applies
    (llm_finetune.serving.slot_batch), else transformers'; "transformers", always transformers'."""
    batcher = Batcher(split_batch(model, max_batch_size), max_batch_size=max_batch_size,
                      max_wait_ms=max_batch_wait_ms)
    continuous = (continuous_batcher(model, max_batch_size, own_forward=decode_forward == "own")
                  if scheduler == "continuous" else None)
    logger.info("scheduler: %s", f"continuous batching for greedy requests ({type(continuous.batch).__name__})"
                if continuous else "dynamic batches")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await run_in_threadpool(batcher.close)
        if continuous is not None:
            await run_in_threadpool(continuous.close)

    app = FastAPI(title="llm-finetune endpoint", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.batcher = batcher
    app.state.continuous = continuous
    authorized = [Depends(bearer_token_check(auth_token))]

    async def encode(prompts: list[Prompt], params: GenerationParams, max_length: int | None = None) -> Encoded:
        # Short text prompts are tokenized right here: the thread pool's two hand-offs, each waiting for the GIL
        # that the decode thread holds, cost more than the tokenizer (issue 22: ~+5% requests/s at 16 clients).
        # Long prompts and chats (a template to render) go to a thread so that they do not stall other requests.
        if all(isinstance(p, str) for p in prompts) and sum(map(len, prompts)) <= INLINE_ENCODE_CHARS:
            return model.encode(prompts, params, max_length)
        return await run_in_threadpool(model.encode, prompts, params, max_length)

    async def complete(encoded: Encoded, params: GenerationParams, max_length: int | None = None,
                       cancelled: threading.Event | None = None, **generate_extras) -> list[Completion]:
        work = Work(encoded, params, generate_extras, cancelled or threading.Event())
        key = None if generate_extras else batch_key(params, max_length)
        try:
            if continuous is not None and continuous.takes(params, generate_extras):
                return await continuous.submit(encoded, params, cancelled=work.cancelled, **generate_extras)
            return await batcher.submit(work, key=key, size=len(encoded.ids))
        finally:  # answered, or cancelled because the client has gone: nothing more to generate for it
            work.cancelled.set()

    async def answer_inputs(invocation: Invocation) -> list[dict]:
        options = invocation.parameters
        if options.return_full_text and model.kind != "text-generation":
            raise InvocationError(f"parameters.return_full_text: a {model.kind} model answers with new text only")
        params = options.generation()
        encoded = await encode(invocation.inputs, params, options.max_length)
        done = await complete(encoded, params, options.max_length)
        return [generated_item(model.output_key, (prompt + c.raw_text.rstrip()) if options.return_full_text
                               else c.text, c, options.details, params.seed)
                for prompt, c in zip(invocation.inputs, done)]

    async def answer_chat(chat: ChatRequest, params: GenerationParams):
        messages = [m.model_dump() for m in chat.messages]
        encoded = await encode([messages], params)
        answer = ChatAnswer(model.name)
        if not chat.stream:
            return answer.completion((await complete(encoded, params))[0])
        if params.num_beams > 1:
            raise InvocationError("stream: not available with num_beams > 1 (beam search decides at the end)")
        return StreamingResponse(stream_chat(answer, encoded, params), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def stream_chat(answer: ChatAnswer, encoded: Encoded, params: GenerationParams) -> AsyncIterator[str]:
        pieces = TextPieces(model.tokenizer, params.stop, asyncio.get_running_loop())
        cancel = threading.Event()
        job = asyncio.ensure_future(complete(encoded, params, cancelled=cancel, streamer=pieces))
        job.add_done_callback(lambda _: pieces.queue.put_nowait(None))  # also ends the loop below if it raised
        try:
            yield _event(answer.chunk({"role": "assistant", "content": ""}))
            while (piece := await pieces.queue.get()) is not None:
                yield _event(answer.chunk({"content": piece}))
            completion = (await job)[0]
            yield _event(answer.chunk({}, completion))
        except Exception as e:  # the status line is sent already: report in the stream, as TGI does
            logger.exception("generation failed")
            yield _event({"error": f"generation failed: {type(e).__name__}: {e}"})
        finally:
            cancel.set()  # the client may have gone: stop generating
        yield "data: [DONE]\n\n"

    async def respond(request: Request, parse, answer) -> object:
        try:
            parsed = parse(await read_body(request, max_body_bytes))
            return await unless_client_goes(request, answer(parsed))
        except ClientDisconnect:  # mid-upload or before its answer: nobody is left to answer, nothing failed
            logger.warning("%s %s: the client closed the connection before it was answered",
                           request.method, request.url.path)
            return _error(499, "the client closed the connection")  # nginx's 'client closed request'; unsent
        except BodyTooLargeError as e:
            return _error(413, str(e))
        except (InvocationError, PromptRejected, RequestError) as e:
            return _error(400, str(e))
        except Exception as e:  # the model's failure is this request's 500, not the server's end
            logger.exception("generation failed")
            return _error(500, f"generation failed: {type(e).__name__}: {e}")

    async def answer_any(parsed) -> object:
        return await answer_inputs(parsed) if isinstance(parsed, Invocation) else await answer_chat(*parsed)

    async def answer_parsed_chat(parsed) -> object:
        return await answer_chat(*parsed)

    @app.get("/ping")
    def ping() -> dict:
        return {"status": "healthy"}

    # Kinds with their own request format (text-classification, question-answering: inference/served.py) bring their
    # parser and answer; they are not batched and have no chat route.
    own_format = hasattr(model, "parse_request")
    lock = threading.Lock()

    def answer_own_locked(parsed) -> object:
        with lock:  # one forward at a time: torch already uses every core
            return model.respond(parsed)

    async def answer_own(parsed) -> object:
        return await run_in_threadpool(answer_own_locked, parsed)

    def no_chat(body: bytes):
        raise RequestError(f"messages: a {model.kind} model has no chat; send {{\"inputs\": ...}} to /invocations")

    @app.post("/invocations", dependencies=authorized)
    async def invocations(request: Request):
        if own_format:
            return await respond(request, model.parse_request, answer_own)
        return await respond(request, parse_request, answer_any)

    @app.post("/v1/chat/completions", dependencies=authorized)
    async def chat_completions(request: Request):
        return await respond(request, no_chat if own_format else parse_chat, answer_parsed_chat)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}", exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    return app


def _event(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 lets the OS pick one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not socket.create_server's proto 0: asyncio sets TCP_NODELAY only on connections of such sockets,
    # and without it every answer (headers, then body: two writes) waited ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
    except OSError:
        sock.close()
        raise
    return sock


class _AnnouncingServer(uvicorn.Server):
    """Prints 'LISTENING <port>' once uvicorn accepts connections."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and sockets:
            print(f"LISTENING {sockets[0].getsockname()[1]}", flush=True)
            # The launcher stops reading stdout after that line; a full pipe would block the server.
            os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def load_served_model(model: str, tracking_uri: str, cache_dir: str | Path) -> ServedModel:
    """A model folder, or a registered version: 'models:/name/3' or 'models:/name@alias' (approved ones only)."""
    if not model.startswith("models:/"):
        return load_text_model(model)
    from llm_finetune.registry.mlflow_registry import download_registered_model  # lazy: imports mlflow

    return load_text_model(download_registered_model(tracking_uri, model, cache_dir), name=model)


def serve(model: str, host: str = "127.0.0.1", port: int = 8080, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, *,
          max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, max_batch_wait_ms: float = DEFAULT_MAX_BATCH_WAIT_MS,
          scheduler: Scheduler = DEFAULT_SCHEDULER, auth_token: str | None = None, tracking_uri: str | None = None,
          cache_dir: str = ".llmft/endpoints", decode_forward: DecodeForward = "own") -> None:
    tracking_uri = tracking_uri or f"sqlite:///{os.path.abspath('.llmft/mlflow.db')}"
    app = create_app(load_served_model(model, tracking_uri, cache_dir), max_body_bytes,
                     max_batch_size=max_batch_size, max_batch_wait_ms=max_batch_wait_ms, scheduler=scheduler,
                     auth_token=auth_token, decode_forward=decode_forward)
    sock = bind(host, port)
    # loop/http "auto": uvloop and httptools (dependencies) where importable, else asyncio and h11. Less time in the
    # event loop leaves more GIL to the decode thread (issue 22: ~+8% requests/s at 16 and 64 clients).
    config = uvicorn.Config(app, loop="auto", http="auto", log_level="info", access_log=False,
                            timeout_graceful_shutdown=10)
    _AnnouncingServer(config).run(sockets=[sock])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SageMaker-protocol text-generation / summarization server")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a model folder, models:/NAME/VERSION or models:/NAME@ALIAS (approved only)")
    which.add_argument("--model-dir", dest="model", help="a model folder (same as --model DIR)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                        help=f"larger request bodies get 413 (default {DEFAULT_MAX_BODY_BYTES})")
    parser.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE,
                        help=f"most prompts in one batched generate, or rows in the running batch; 1 turns "
                             f"batching off (default {DEFAULT_MAX_BATCH_SIZE})")
    parser.add_argument("--max-batch-wait-ms", type=float, default=DEFAULT_MAX_BATCH_WAIT_MS,
                        help=f"how long a request waits for others to share its batch (default "
                             f"{DEFAULT_MAX_BATCH_WAIT_MS:g})")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default=DEFAULT_SCHEDULER,
                        help="continuous: greedy text-generation requests join and leave a running batch between "
                             "decode steps; batches: requests that arrive together run as one generate (default "
                             f"{DEFAULT_SCHEDULER})")
    parser.add_argument("--decode-forward", choices=DECODE_FORWARDS, default="own",
                        help="continuous scheduler: own, the project's forward for Llama-family models with plain "
                             "linear layers (llm_finetune.serving.slot_batch), transformers' for the others; "
                             "transformers: always transformers' forward (default own)")
    parser.add_argument("--auth-token", default=os.environ.get(TOKEN_ENV) or None,
                        help=f"bearer token every request must carry (default ${TOKEN_ENV}; the variable keeps it "
                             "out of the process list); required on a non-loopback --host")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                        help="MLflow registry for models:/ URIs: sqlite:///, http(s):// or a SageMaker managed MLflow "
                             "ARN (default $MLFLOW_TRACKING_URI, else sqlite:///.llmft/mlflow.db)")
    parser.add_argument("--cache-dir", default=".llmft/endpoints", help="where registered versions are downloaded")
    args = parser.parse_args(argv)
    problems = []
    if args.max_body_bytes <= 0:
        problems.append(f"--max-body-bytes must be > 0, got {args.max_body_bytes}")
    if args.max_batch_size < 1:
        problems.append(f"--max-batch-size must be >= 1, got {args.max_batch_size}")
    if args.max_batch_wait_ms < 0:
        problems.append(f"--max-batch-wait-ms must be >= 0, got {args.max_batch_wait_ms:g}")
    if not is_loopback(args.host) and not args.auth_token:
        problems.append(f"--host {args.host} is not a loopback address: set a bearer token with --auth-token or "
                        f"${TOKEN_ENV}, or serve on 127.0.0.1")
    if problems:
        parser.error("; ".join(problems))
    try:
        serve(args.model, args.host, args.port, args.max_body_bytes, max_batch_size=args.max_batch_size,
              max_batch_wait_ms=args.max_batch_wait_ms, scheduler=args.scheduler, auth_token=args.auth_token,
              tracking_uri=args.tracking_uri, cache_dir=args.cache_dir, decode_forward=args.decode_forward)
    except (ValueError, ApprovalRequiredError) as e:  # a models:/ URI that does not resolve, or is not approved
        parser.exit(2, f"{parser.prog}: error: {e}\n")


if __name__ == "__main__":
    main()
