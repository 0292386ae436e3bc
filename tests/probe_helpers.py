"""Test helpers for the probes: a scripted chat model, a chat-completions HTTP app, a tiny model gone mute."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


class ScriptedChat:
    """A test double of the ChatModel protocol: answers by a function of the last user message."""

    def __init__(self, name: str, answer: Callable[[str], str]):
        self.name = name
        self.answer = answer
        self.calls: list[list[dict]] = []

    def chat(self, messages, max_tokens, temperature, seed) -> str:
        self.calls.append(messages)
        return self.answer(messages[-1]["content"])


def chat_app(answer: Callable[[str], str], token: str | None = None, requests: list | None = None):
    """A FastAPI app speaking the chat wire contract; records each request body in `requests`."""
    from fastapi import FastAPI, Header
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.post("/v1/chat/completions")
    def completions(body: dict, authorization: str | None = Header(None)):
        if requests is not None:
            requests.append({"body": body, "authorization": authorization})
        if token and authorization != f"Bearer {token}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        text = answer(body["messages"][-1]["content"])
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    return app


def mute_copy(model_dir: str | Path, out: Path) -> Path:
    """Copy of a causal LM that always answers with nothing: the final norm is zeroed, so every logit is 0 and greedy
    search picks token 0, a special token (<unk>) that decodes to ''."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():
        model.model.norm.weight.zero_()
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    return out
