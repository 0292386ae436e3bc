"""Test helpers for the chat side: a stand-in endpoint that speaks the chat wire contract (the real server's chat
route comes from the `serve` branch), records what it was sent, and answers from a scripted function."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.conftest import REPO

SUITES = REPO / "suites"


def words(text: str) -> int:
    return len(text.split())


def contract_app(answer: Callable[[dict], str], *, token: str | None = None, seen: list | None = None,
                 report_tokens: bool = True) -> FastAPI:
    """/ping, /invocations (inputs or messages) and /v1/chat/completions; `answer(body)` writes each reply, a 'token'
    counts as a word. With `token`, requests without 'Authorization: Bearer <token>' get 401."""
    app = FastAPI()
    seen = seen if seen is not None else []

    @app.get("/ping")
    def ping() -> dict:
        return {"status": "healthy"}

    async def handle(request: Request):
        body = await request.json()
        seen.append({"path": request.url.path, "authorization": request.headers.get("authorization"), "body": body})
        if token is not None and request.headers.get("authorization") != f"Bearer {token}":
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
        text = answer(body)
        if "messages" in body:
            limit = body.get("max_tokens")
            reply = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "stand-in",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                  "finish_reason": "length" if limit and words(text) >= limit else "stop"}]}
            if report_tokens:
                prompt = sum(words(m["content"]) for m in body["messages"])
                reply["usage"] = {"prompt_tokens": prompt, "completion_tokens": words(text),
                                  "total_tokens": prompt + words(text)}
            return reply
        item = {"generated_text": text}
        if (body.get("parameters") or {}).get("details") and report_tokens:
            item["details"] = {"finish_reason": "stop", "generated_tokens": words(text)}
        return [item]

    app.post("/invocations")(handle)
    app.post("/v1/chat/completions")(handle)
    return app


def cot_answers() -> dict[str, float]:
    """Question text -> known answer, from the shipped arithmetic suite."""
    records = [json.loads(line) for line in (SUITES / "cot_arithmetic.jsonl").read_text().splitlines()]
    return {r["question"]: r["answer"] for r in records}


def last_question(body: dict) -> str:
    """The question a cot request asks (chat: the last user turn's first line; inputs: the last 'Question:')."""
    if "messages" in body:
        return body["messages"][-1]["content"].split("\n")[0]
    return body["inputs"].rsplit("Question: ", 1)[1].split("\n")[0]


def step_by_step_solver(body: dict) -> str:
    """A stand-in model that is right only when asked to reason (zero-shot cue or worked examples), else off by one."""
    known = cot_answers().get(last_question(body))
    if known is None:
        return "Hello! How can I help?"
    if "messages" in body:
        asked = body["messages"][-1]["content"]
        worked_examples = any(m["role"] == "assistant" for m in body["messages"])
    else:
        asked, worked_examples = body["inputs"], body["inputs"].count("Question:") > 1
    reasons = "step by step" in asked or worked_examples
    value = int(known) if reasons else int(known) + 1
    return f"Let me work through it. So the answer is {value}." if reasons else f"{value}"


def write_lines(path: Path, *records: dict | str) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path
