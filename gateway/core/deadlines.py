"""Deadlines for the request path that arm no timer of their own.

``asyncio.timeout`` arms a loop timer on every use (on uvloop, a libuv timer allocated,
started, stopped and freed) and costs about as much as the rest of the attempt loop; the
proxy needs one per request and two per stream (response headers, then the first bytes).
``deadline(delay)`` instead registers with one ticker per event loop: while any deadline is
pending, the ticker wakes every ``TICK_S`` seconds and cancels the tasks whose deadline has
passed. A deadline therefore fires up to one tick late, which is nothing next to upstream
timeouts of seconds. Otherwise it behaves like ``asyncio.timeout``: the block is cancelled and
``TimeoutError`` raised from it, while a cancellation from elsewhere (the client went away)
still propagates as ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import weakref
from asyncio import CancelledError, current_task, get_running_loop

TICK_S = 0.025


class _Ticker:
    """The pending deadlines of one event loop and the one timer that checks them."""

    __slots__ = ("loop", "pending", "handle", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.pending: set[deadline] = set()
        self.handle: asyncio.TimerHandle | None = None

    def tick(self) -> None:
        now = self.loop.time()
        pending = self.pending
        for scope in [s for s in pending if s.when <= now]:
            pending.discard(scope)
            scope.expired = True
            scope.task.cancel()
        # Disarmed when nothing waits: an idle gateway does not wake up.
        self.handle = self.loop.call_at(now + TICK_S, self.tick) if pending else None


class _Tickers:
    """One ticker per event loop; the one used last is kept at hand (a process serves from one loop)."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Ticker] = weakref.WeakKeyDictionary()
        self._last: _Ticker | None = None

    def of(self, loop: asyncio.AbstractEventLoop) -> _Ticker:
        last = self._last
        if last is not None and last.loop is loop:
            return last
        ticker = self._by_loop.get(loop)
        if ticker is None:
            ticker = self._by_loop[loop] = _Ticker(loop)
        self._last = ticker
        return ticker


_TICKERS = _Tickers()


class deadline:  # noqa: N801 - used like asyncio.timeout
    """``with deadline(seconds):`` inside a task; ``None`` means no deadline."""

    __slots__ = ("delay", "when", "task", "expired", "_ticker", "_cancelling")

    def __init__(self, delay: float | None):
        self.delay = delay
        self.expired = False

    def __enter__(self) -> deadline:
        if self.delay is None:
            self._ticker = None
            return self
        loop = get_running_loop()
        task = current_task(loop)
        if task is None:
            raise RuntimeError("deadline() must be used inside a task")
        self.task = task
        self._cancelling = task.cancelling()
        self.when = loop.time() + self.delay
        ticker = self._ticker = _TICKERS.of(loop)
        ticker.pending.add(self)
        if ticker.handle is None:
            ticker.handle = loop.call_at(min(self.when, loop.time() + TICK_S), ticker.tick)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._ticker is None:
            return
        self._ticker.pending.discard(self)
        # As asyncio.timeout: ours only if no other cancellation was requested meanwhile.
        if self.expired and self.task.uncancel() <= self._cancelling and exc_type is CancelledError:
            raise TimeoutError from exc


__all__ = ["TICK_S", "deadline"]
