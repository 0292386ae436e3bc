"""Token streaming for one `generate` call: text pieces whose concatenation is exactly the non-streamed answer.

`TextPieces` is a transformers streamer (pass it as `generate(streamer=...)`); it decodes the answer so far after
each token and hands new text to an asyncio queue. `StreamedAnswer` holds back what the next tokens may still
change: a tail that could begin a stop string, trailing whitespace (the answer is stripped), a character whose
bytes are split across tokens. `cancel_criteria` stops generation when the clients have gone.
"""

from __future__ import annotations

import asyncio
import threading

from llm_finetune.generation import cut_at_stop


class StreamedAnswer:
    """Turns the growing decoded answer into the pieces to send: their concatenation is always a prefix of
    `cut_at_stop(final, stop).strip()` and, after `finish`, equal to it."""

    def __init__(self, stop: list[str]):
        self.stop = [s for s in stop if s]
        self.sent = ""
        self.done = False

    def feed(self, text: str) -> str:
        """The new piece to send, given the whole answer decoded so far."""
        if self.done:
            return ""
        cut = cut_at_stop(text, self.stop)
        if len(cut) < len(text):
            self.done = True
            return self._send(cut.strip())
        return self._send(text[: len(text) - self._maybe_stop(text)].strip())

    def finish(self, text: str) -> str:
        """The last piece, given the whole decoded answer."""
        piece = "" if self.done else self._send(cut_at_stop(text, self.stop).strip())
        self.done = True
        return piece

    def _maybe_stop(self, text: str) -> int:
        """Length of the longest tail of `text` that is the start of a stop string."""
        return max((k for s in self.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)

    def _send(self, visible: str) -> str:
        piece = visible[len(self.sent):]
        self.sent = visible
        return piece


class TextPieces:
    """A `generate` streamer for a batch of one: puts each new piece of answer text on `queue`, then None."""

    def __init__(self, tokenizer, stop: list[str], loop: asyncio.AbstractEventLoop):
        self.tokenizer = tokenizer
        self.answer = StreamedAnswer(stop)
        self.loop = loop
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._ids: list[int] = []
        self._prompt_skipped = False

    def put(self, value) -> None:
        if not self._prompt_skipped:  # generate first puts the prompt (decoder-only) or the start token
            self._prompt_skipped = True
            return
        self._ids.extend(value.reshape(-1).tolist())
        text = self.tokenizer.decode(self._ids, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # else a character's bytes are still incomplete
            self._send(self.answer.feed(text))

    def end(self) -> None:
        self._send(self.answer.finish(self.tokenizer.decode(self._ids, skip_special_tokens=True)))
        self.loop.call_soon_threadsafe(self.queue.put_nowait, None)

    def _send(self, piece: str) -> None:
        if piece:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, piece)


def cancel_criteria(*events: threading.Event):
    """`generate(stopping_criteria=...)` that ends every sequence once every event is set (the clients of a batch
    have all gone: the others still wait for their answers)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class Cancelled(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            gone = all(event.is_set() for event in events)
            return torch.full((input_ids.shape[0],), gone, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([Cancelled()])
