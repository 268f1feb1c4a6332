"""Dynamic batching with admission control for the HTTP service.

Requests are *admitted* first (at most ``max_pending`` at a time, counting those still uploading or decoding),
so memory is bounded whatever the load: a request beyond the bound is refused at once (HTTP 503) instead of
queueing without limit. Admitted images wait in a queue; one worker takes up to ``max_batch`` of them (waiting
at most ``max_wait_s`` for a batch to fill when the queue runs dry), groups them by the run settings a batch must
share (the job's ``key``: the decoder depth) and runs each group on a single inference thread, so the model is
never used concurrently. Settings applied per image after the shared forward pass (the job's ``option``: the class
filter) do not split a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Busy", "Job", "MicroBatcher"]

#: ``run_batch(images [B, H, W, 3] uint8, sizes [B, 2] (w, h) int, key, options) -> B results``: ``key`` holds
#: the run settings the batch's jobs share (for the service: the decoder depth), ``options`` each job's own
#: (B entries; for the service: its class filter)
RunBatch = Callable[[np.ndarray, np.ndarray, Any, list[Any]], list[Any]]


class Busy(Exception):
    """More requests in flight than the service admits."""


@dataclass
class Job:
    """One image waiting for inference: ``image`` ``[H, W, 3]`` uint8 at the network size, ``size`` original
    (w, h), ``key`` its run settings (only jobs with equal keys share a batch), ``option`` its own settings
    (passed per image)."""

    image: np.ndarray
    size: tuple[int, int]
    key: Hashable
    option: Any
    future: asyncio.Future = field(repr=False)
    queued_at: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Collects concurrent requests into batches for ``run_batch``.

    Args:
        run_batch: the inference function (runs on one dedicated thread).
        max_batch: largest batch.
        max_wait_s: how long a non-full batch waits for more requests.
        max_pending: requests admitted at once (uploading, decoding, queued or running).
        on_idle: called on the inference thread whenever the queue runs empty after a batch (memory trimming).
    """

    def __init__(
        self,
        run_batch: RunBatch,
        max_batch: int = 8,
        max_wait_s: float = 0.005,
        max_pending: int = 256,
        on_idle: Callable[[], None] | None = None,
    ):
        if max_batch < 1 or max_pending < 1 or max_wait_s < 0:
            raise ValueError("max_batch and max_pending must be >= 1 and max_wait_s >= 0")
        self.run_batch, self.on_idle = run_batch, on_idle
        self.max_batch, self.max_wait_s, self.max_pending = max_batch, max_wait_s, max_pending
        self.pending = 0
        self.batches = 0
        self.images = 0
        self._queue: asyncio.Queue[Job] | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtdetr-infer")

    # --------------------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._loop(), name="rtdetr-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(Busy("the service is shutting down"))
        self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------------------------------------ submit
    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold one of the ``max_pending`` places for the whole request; raises :class:`Busy` when none is free."""
        if self.pending >= self.max_pending:
            raise Busy(f"{self.pending} requests in flight (limit {self.max_pending}); retry shortly")
        self.pending += 1
        try:
            yield
        finally:
            self.pending -= 1

    async def submit(self, image: np.ndarray, size: tuple[int, int], key: Hashable = None, option: Any = None) -> Any:
        """Queue one prepared image (inside :meth:`admit`) with the run settings ``key`` it must share with its
        batch and its own ``option``, and wait for its result."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        job = Job(image, size, key, option, asyncio.get_running_loop().create_future())
        self._queue.put_nowait(job)
        return await job.future

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    # -------------------------------------------------------------------------------------------------- loop
    async def _next_batch(self) -> list[Job]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            await asyncio.sleep(min(left, 0.001))  # poll: wait_for(get()) can lose an item when cancelled
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            groups: dict[Hashable, list[Job]] = {}
            for job in batch:
                if not job.future.done():  # a client that went away is not computed
                    groups.setdefault(job.key, []).append(job)
            for key, jobs in groups.items():
                images = np.stack([j.image for j in jobs])
                sizes = np.array([j.size for j in jobs], dtype=np.int64)
                options = [j.option for j in jobs]
                try:
                    results = await loop.run_in_executor(self._executor, self.run_batch, images, sizes, key, options)
                except Exception as e:  # reported to each waiting request; the loop goes on
                    for j in jobs:
                        if not j.future.done():
                            j.future.set_exception(e)
                    continue
                self.batches += 1
                self.images += len(jobs)
                for j, r in zip(jobs, results):
                    if not j.future.done():
                        j.future.set_result(r)
            if self.on_idle is not None and self._queue is not None and self._queue.empty():
                await loop.run_in_executor(self._executor, self.on_idle)
