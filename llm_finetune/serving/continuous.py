"""Continuous batching (iteration-level scheduling) for decoder-only text generation.

One scheduler thread holds the running batch (llm_finetune.serving.running_batch). Between two decode steps it
drops rows whose client has gone, admits waiting prompts (up to `max_rows` rows in all) and settles rows that
finished, so a short answer leaves without waiting for a long one and a new request starts at the next step.
Greedy requests only (`takes`); the server sends the others to the dynamic batcher (llm_finetune.serving.batching).
If a forward raises, the requests whose rows were in it get the error and those rows leave the batch.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Literal, get_args

from llm_finetune.generation import Completion, GenerationParams, completions, eos_token_ids
from llm_finetune.inference.served import Encoded
from llm_finetune.recipes.base import DEFAULT_MAX_BATCH_SIZE
from llm_finetune.serving.batching import settle

logger = logging.getLogger("llm_finetune.serving")

DecodeForward = Literal["own", "transformers"]
DECODE_FORWARDS: tuple[str, ...] = get_args(DecodeForward)


class ClientGone(Exception):
    """A row dropped because its request was cancelled."""


@dataclass(eq=False)
class _Waiting:
    row: object  # running_batch.Row
    stop: list[str]
    cancelled: threading.Event
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future


def continuous_batcher(model, max_rows: int = DEFAULT_MAX_BATCH_SIZE, *,
                       own_forward: bool = True) -> ContinuousBatcher | None:
    """The engine for a served model that it can run (decoder-only with a plain KV cache), else None."""
    from llm_finetune.serving.running_batch import uses_plain_cache  # lazy: imports torch and transformers

    lm = getattr(model, "causal_lm", None)
    try:
        plain = lm is not None and uses_plain_cache(lm)
    except Exception as e:  # noqa: BLE001  (a model this probe cannot run is served by the dynamic batches)
        logger.warning("continuous batching is off for this model: its probe forward failed (%s: %s)",
                       type(e).__name__, e)
        plain = False
    return ContinuousBatcher(lm, model.tokenizer, max_rows=max_rows, own_forward=own_forward) if plain else None


class ContinuousBatcher:
    """Answers greedy requests on a decoder-only transformers model, rows joining and leaving between steps;
    with own_forward, a model that SlotBatch supports runs on that forward (llm_finetune.serving.slot_batch)."""

    def __init__(self, model, tokenizer, *, max_rows: int = DEFAULT_MAX_BATCH_SIZE, own_forward: bool = True):
        from llm_finetune.serving.running_batch import RunningBatch  # lazy: imports torch and transformers
        from llm_finetune.serving.slot_batch import SlotBatch

        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        self.tokenizer = tokenizer
        self.eos_ids = eos_token_ids(model, tokenizer)
        own = own_forward and SlotBatch.supports(model)
        self.batch = (SlotBatch if own else RunningBatch)(model, self.eos_ids)
        self.max_rows = max_rows
        self.rows_per_step: Counter[int] = Counter()  # rows in a decode step -> how many steps
        self._queue: queue.Queue[_Waiting | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="continuous-batching", daemon=True)
        self._thread.start()

    @staticmethod
    def takes(params: GenerationParams, generate_extras: dict) -> bool:
        """Whether these settings run here: greedy search, no n-gram ban, nothing for generate but a streamer."""
        return (params.num_beams == 1 and not params.do_sample and params.no_repeat_ngram_size == 0
                and set(generate_extras) <= {"streamer"})

    async def submit(self, encoded: Encoded, params: GenerationParams, *, cancelled: threading.Event,
                     streamer=None) -> list[Completion]:
        """A Completion per prompt once all are answered; the rows stop once `cancelled` is set."""
        from llm_finetune.serving.running_batch import Row  # lazy: imports torch and transformers

        if self._closed:
            raise RuntimeError("the endpoint is shutting down")
        loop = asyncio.get_running_loop()
        budgets = encoded.budgets or [params.max_new_tokens] * len(encoded.ids)
        waiting = [_Waiting(Row(ids, budget, params.repetition_penalty, streamer=streamer), params.stop, cancelled,
                            loop, loop.create_future()) for ids, budget in zip(encoded.ids, budgets)]
        for w in waiting:
            self._queue.put(w)
        return list(await asyncio.gather(*(w.future for w in waiting)))

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop after the current step; rows still running or waiting get an error."""
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _work(self) -> None:
        waiting: deque[_Waiting] = deque()
        running: dict[int, _Waiting] = {}  # id(row) -> its request
        try:
            self._schedule(waiting, running)
        finally:  # closed, or an error outside a forward (logged by threading): nobody is left waiting
            self._closed = True
            self._take(waiting, block=False)
            self._fail([*running.values(), *waiting], RuntimeError("the endpoint is shutting down"))

    def _schedule(self, waiting: deque[_Waiting], running: dict[int, _Waiting]) -> None:
        while not self._closed:
            self._take(waiting, block=not running and not waiting)
            self._drop_cancelled(waiting, running)
            room = self.max_rows - len(running)
            if waiting and room > 0:
                admitted = [self._admitted(waiting.popleft()) for _ in range(min(room, len(waiting)))]
                new = {id(w.row): w for w in admitted}
                running.update(new)
                self._guarded(new, running, self.batch.join, [w.row for w in admitted])
            if running:
                self.rows_per_step[len(running)] += 1
                self._guarded(dict(running), running, self.batch.step)

    def _guarded(self, rows: dict[int, _Waiting], running: dict[int, _Waiting], forward, *args) -> None:
        """Run a forward (a join or a step) and answer the rows it finished; if it raises, its rows get the error
        and leave (a join's newcomers only: the running rows were not in its forward)."""
        try:
            self._finish(forward(*args), running)
        except Exception as error:  # noqa: BLE001  (it goes to the requests; the server logs it)
            logger.warning("a continuous batching forward of %d rows failed (%s: %s); they leave the batch",
                           len(rows), type(error).__name__, error)
            self.batch.drop([w.row for w in rows.values()])
            self._fail(list(rows.values()), error)
            for key in rows:
                running.pop(key, None)

    def _take(self, waiting: deque[_Waiting], *, block: bool) -> None:
        """Move queued requests to `waiting`; with block, wait for the first one."""
        while True:
            try:
                item = self._queue.get(block=block)
            except queue.Empty:
                return
            if item is None:
                self._closed = True
                return
            waiting.append(item)
            block = False

    def _admitted(self, w: _Waiting) -> _Waiting:
        from transformers.generation.stopping_criteria import StopStringCriteria

        if w.stop:  # built here, not in the event loop: it reads the whole vocabulary (transformers caches 8)
            w.row.stop = StopStringCriteria(self.tokenizer, w.stop)
        return w

    def _drop_cancelled(self, waiting: deque[_Waiting], running: dict[int, _Waiting]) -> None:
        for w in [w for w in waiting if w.cancelled.is_set()]:
            waiting.remove(w)
        gone = [w for w in running.values() if w.cancelled.is_set() or w.future.done()]
        self.batch.drop([w.row for w in gone])
        self._fail(gone, ClientGone())
        for w in gone:
            del running[id(w.row)]

    def _finish(self, rows: list, running: dict[int, _Waiting]) -> None:
        import torch

        for row in rows:
            w = running.pop(id(row))
            if row.streamer is not None:
                row.streamer.end()
            (done,) = completions(self.tokenizer, torch.tensor([row.tokens]), [len(row.prompt)], w.stop,
                                  self.eos_ids)
            w.loop.call_soon_threadsafe(settle, w.future, done, None)

    @staticmethod
    def _fail(waiting: list[_Waiting], error: BaseException) -> None:
        for w in waiting:  # a streamed answer ends with its request's error (the server ends the stream)
            w.loop.call_soon_threadsafe(settle, w.future, None, error)
