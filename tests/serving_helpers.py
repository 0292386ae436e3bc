"""Test helpers for the endpoint server: a stand-in served model that needs no weights."""

from __future__ import annotations

import threading
import time

from llm_finetune.generation import Completion
from llm_finetune.inference.served import Encoded


class FlakyModel:
    """Answers 'summary of <input>'; fails on the input 'fail', as a model can on one input. Records each
    `complete` call (inputs, settings); `gate`, when given, holds every call until it is set; `entered` is set
    once a call has started."""

    kind = "text2text-generation"
    output_key = "summary_text"
    name = "flaky"
    tokenizer = None

    def __init__(self, gate: threading.Event | None = None):
        self.calls = []
        self.gate = gate
        self.entered = threading.Event()

    def encode(self, prompts, params, max_length=None) -> Encoded:
        return Encoded(list(prompts), [[len(str(p))] for p in prompts])

    def complete(self, encoded, params, *, batch_size=16, **generate_extras) -> list[Completion]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(timeout=30)
        self.calls.append((encoded.prompts, params))
        if "fail" in encoded.prompts:
            raise RuntimeError("out of memory (simulated)")
        return [Completion(f"summary of {p}", f" summary of {p}", ids[0], 3, "eos_token")
                for p, ids in zip(encoded.prompts, encoded.ids)]


def wait_until(condition, timeout_s: float = 30.0) -> None:
    """Poll `condition()` every 10 ms until it holds; AssertionError after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
