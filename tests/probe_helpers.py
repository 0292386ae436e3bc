"""Test helpers for the probes: a scripted chat model, answers for the stand-in endpoint, a tiny model gone mute."""

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


def asked(answer: Callable[[str], str]) -> Callable[[dict], str]:
    """An answer function of the last message's text, as tests.chat_helpers.contract_app calls it with the body."""
    return lambda body: answer(body["messages"][-1]["content"])


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
