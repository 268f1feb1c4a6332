"""MicroBatcher: concurrent submissions are batched (never above max_batch), grouped by decoder depth (the key)
while each job's own option (its class filter) rides along without splitting the batch, failures reach every
waiting request, and admission is bounded."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from rtdetr.serve.batcher import Busy, MicroBatcher


class Recorder:
    def __init__(self, fail_on: int | None = None, delay: float = 0.02) -> None:
        self.calls: list[tuple[int, int | None]] = []
        self.options: list[list] = []
        self.threads: set[str] = set()
        self.fail_on, self.delay = fail_on, delay

    def __call__(self, images: np.ndarray, sizes: np.ndarray, depth: int | None, options: list) -> list[int]:
        assert images.dtype == np.uint8 and images.ndim == 4 and sizes.shape == (len(images), 2)
        assert len(options) == len(images)
        self.calls.append((len(images), depth))
        self.options.append(options)
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in sizes[:, 0]:
            raise RuntimeError("model failed")
        return [int(w) * 10 + (depth or 0) + 100 * (o or 0) for w, o in zip(sizes[:, 0], options)]


async def _submit_all(b: MicroBatcher, n: int, depth_of=lambda i: None, option_of=lambda i: None) -> list:
    async def one(i: int):
        async with b.admit():
            return await b.submit(np.zeros((4, 4, 3), np.uint8), (i, 1), depth_of(i), option_of(i))

    await b.start()
    try:
        return await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    finally:
        await b.stop()


def test_batches_form_under_load_and_results_route_back() -> None:
    rec = Recorder()
    out = asyncio.run(_submit_all(MicroBatcher(rec, max_batch=4, max_wait_s=0.01), 10))
    assert out == [i * 10 for i in range(10)]
    sizes = [n for n, _ in rec.calls]
    assert sum(sizes) == 10 and max(sizes) == 4 and len(sizes) < 10
    assert len(rec.threads) == 1  # one inference thread: the model is never used concurrently


def test_groups_by_decoder_depth() -> None:
    rec = Recorder()
    out = asyncio.run(_submit_all(MicroBatcher(rec, max_batch=8, max_wait_s=0.01), 8, lambda i: 1 + i % 2))
    assert out == [i * 10 + 1 + i % 2 for i in range(8)]
    assert all(d in (1, 2) for _, d in rec.calls)
    assert sum(n for n, d in rec.calls if d == 1) == 4


def test_options_ride_along_without_splitting_the_batch() -> None:
    """Jobs with different options (the service's class filters) share one batch, each with its own option."""
    rec = Recorder()
    out = asyncio.run(_submit_all(MicroBatcher(rec, max_batch=8, max_wait_s=0.05), 8, option_of=lambda i: i % 3))
    assert out == [i * 10 + 100 * (i % 3) for i in range(8)]
    assert [n for n, _ in rec.calls] == [8] and sorted(rec.options[0]) == sorted(i % 3 for i in range(8))


def test_a_failing_batch_fails_its_requests_only() -> None:
    rec = Recorder(fail_on=3)
    out = asyncio.run(_submit_all(MicroBatcher(rec, max_batch=2, max_wait_s=0.0), 6))
    failed = [i for i, r in enumerate(out) if isinstance(r, RuntimeError)]
    assert 3 in failed and len(failed) <= 2
    assert all(out[i] == i * 10 for i in range(6) if i not in failed)


def test_admission_is_bounded() -> None:
    async def run() -> None:
        b = MicroBatcher(Recorder(), max_pending=2)
        async with b.admit(), b.admit():
            with pytest.raises(Busy, match="limit 2"):
                async with b.admit():
                    pass
            assert b.pending == 2
        assert b.pending == 0

    asyncio.run(run())


def test_bad_settings_rejected() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), max_batch=0)
