"""``deadline``: asyncio.timeout's behaviour from one shared ticker per loop (no timer per use)."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.core.deadlines import _TICKERS, TICK_S, deadline


def _run(coro):
    return asyncio.run(coro)


def test_a_block_past_its_deadline_raises_timeout_and_the_ticker_disarms():
    async def main():
        t0 = time.perf_counter()
        with pytest.raises(TimeoutError):
            with deadline(0.05):
                await asyncio.sleep(30)
        waited = time.perf_counter() - t0
        ticker = _TICKERS.of(asyncio.get_running_loop())
        assert not ticker.pending and ticker.handle is None  # nothing pending: no wake-ups
        # the task is usable afterwards: no cancellation left over
        await asyncio.sleep(2 * TICK_S)
        return waited

    assert _run(main()) >= 0.05


def test_a_block_done_in_time_returns_and_is_never_cancelled_later():
    async def main():
        with deadline(0.05):
            value = await asyncio.sleep(0, result=7)
        await asyncio.sleep(0.05 + 3 * TICK_S)  # well past the deadline, outside the block
        return value

    assert _run(main()) == 7


def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    async def guarded(started: asyncio.Event):
        with deadline(30):
            started.set()
            await asyncio.sleep(30)

    async def main():
        started = asyncio.Event()
        task = asyncio.create_task(guarded(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not _TICKERS.of(asyncio.get_running_loop()).pending

    _run(main())


def test_only_the_expired_of_many_concurrent_deadlines_fire():
    async def wait(delay: float, limit: float) -> str:
        try:
            with deadline(limit):
                await asyncio.sleep(delay)
            return "done"
        except TimeoutError:
            return "timeout"

    async def main():
        return await asyncio.gather(*[wait(0.3, 0.05) for _ in range(5)], *[wait(0.01, 30) for _ in range(5)])

    assert _run(main()) == ["timeout"] * 5 + ["done"] * 5


def test_none_means_no_deadline():
    async def main():
        with deadline(None):
            await asyncio.sleep(2 * TICK_S)
        return not _TICKERS.of(asyncio.get_running_loop()).pending

    assert _run(main())
