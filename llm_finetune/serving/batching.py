"""Dynamic batching: requests with the same batch key that arrive together run as one `generate` call.

One worker thread runs every batch in turn (torch already uses every core it is given). A batch holds at most
`max_batch_size` prompts; once the oldest waiting request has waited `max_wait_ms`, the batch starts with whatever
compatible requests are queued. Requests whose key is None always run alone. Which requests may share a batch is
the caller's `batch_key` (for generation: `llm_finetune.inference.served.batch_key`).

If a batch of several requests raises, each of its requests is run again alone, so only the failing one gets the
error. A request whose client has gone (its `submit` cancelled) before its batch runs is left out of it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from llm_finetune.recipes.base import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_BATCH_WAIT_MS

logger = logging.getLogger("llm_finetune.serving")


@dataclass(eq=False)
class _Job:
    payload: Any
    key: Hashable | None
    size: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


def settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the request's client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Batcher:
    """Runs `run(payloads) -> results` (one result per payload, same order) on batches of submitted payloads."""

    def __init__(self, run: Callable[[list[Any]], list[Any]], *, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                 max_wait_ms: float = DEFAULT_MAX_BATCH_WAIT_MS):
        if max_batch_size < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch_size must be >= 1 and max_wait_ms >= 0, got {max_batch_size}, {max_wait_ms}")
        self._run_batch = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.batch_sizes: Counter[int] = Counter()  # prompts per batch run -> how many batches
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="generate-batches", daemon=True)
        self._thread.start()

    async def submit(self, payload: Any, *, key: Hashable | None, size: int = 1) -> Any:
        """The payload's result once its batch has run (its exception if it raised)."""
        if self._closed:
            raise RuntimeError("the batcher is closed")
        loop = asyncio.get_running_loop()
        job = _Job(payload, key, size, loop, loop.create_future())
        self._queue.put(job)
        return await job.future

    def close(self, timeout_s: float = 30.0) -> None:
        """Finish the running batch and stop; requests still queued get an error."""
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout_s)

    def _work(self) -> None:
        pending: deque[_Job] = deque()  # taken from the queue but not yet run (another key than the last batch)
        while not self._closed or pending:
            if not pending:
                job = self._queue.get()
                if job is None:
                    break
                pending.append(job)
            self._run(self._collect(pending))
        while True:  # whatever is still queued
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                pending.append(job)
        for job in pending:
            job.loop.call_soon_threadsafe(settle, job.future, None, RuntimeError("the endpoint is shutting down"))

    def _collect(self, pending: deque[_Job]) -> list[_Job]:
        """The oldest pending job and every compatible one queued until it has waited max_wait_ms."""
        first = pending.popleft()
        batch, size = [first], first.size
        if first.key is None:
            return batch

        def joins(job: _Job) -> bool:
            return job.key == first.key and size + job.size <= self.max_batch_size

        for job in list(pending):
            if joins(job):
                pending.remove(job)
                batch.append(job)
                size += job.size
        deadline = first.arrived + self.max_wait_s
        while size < self.max_batch_size:
            wait_s = deadline - time.monotonic()
            try:  # past the deadline, still take what is already queued
                job = self._queue.get(timeout=wait_s) if wait_s > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._closed = True
                break
            if joins(job):
                batch.append(job)
                size += job.size
            else:
                pending.append(job)
        return batch

    def _run(self, batch: list[_Job]) -> None:
        batch = [job for job in batch if not job.future.done()]  # done before it ran: cancelled, its client gone
        if not batch:
            return
        try:
            results = self._run_batch([job.payload for job in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)} requests")
        except Exception as error:  # noqa: BLE001  (it goes to the request; the server logs it with its traceback)
            if len(batch) > 1:
                logger.warning("a batch of %d requests failed (%s: %s); running each alone",
                               len(batch), type(error).__name__, error)
                for job in batch:
                    self._run([job])
                return
            batch[0].loop.call_soon_threadsafe(settle, batch[0].future, None, error)
            return
        self.batch_sizes[sum(job.size for job in batch)] += 1
        for job, result in zip(batch, results):
            job.loop.call_soon_threadsafe(settle, job.future, result, None)
