"""Waiting for a condition instead of sleeping and hoping.

Tests must pass on a busy two-core machine (CI runs while other work competes for the CPU), so
no test sleeps a fixed time and then asserts: it polls for the state it needs, with a deadline
generous enough for a loaded machine, and fails with a message naming what it waited for. The
timeout raises ``AssertionError``: a test failure that a caller may also catch, for a check that
only applies when a condition comes about.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# Long enough for a loaded two-core machine; a passing test never waits this long.
DEFAULT_TIMEOUT_S = 20.0


def wait_for(predicate: Callable[[], T], timeout: float = DEFAULT_TIMEOUT_S, what: str = "condition", *,
             interval: float = 0.02) -> T:
    """Poll ``predicate()`` until it returns something truthy; return that value, or fail the
    test once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


async def async_wait_for(predicate: Callable[[], T | Awaitable[T]], timeout: float = DEFAULT_TIMEOUT_S,
                         what: str = "condition", *, interval: float = 0.02) -> T:
    """``wait_for`` for coroutines: ``predicate`` may be sync or async."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


def stays(predicate: Callable[[], object], duration: float, interval: float = 0.02) -> bool:
    """True when ``predicate()`` holds for ``duration`` seconds: for the rare "this must NOT
    happen" check, where no event can be awaited. Keep ``duration`` as short as the behaviour
    allows; it is a lower bound on the test's time, never an upper bound on the code's."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(interval)
    return bool(predicate())


def stops_growing(counter: Callable[[], int], quiet_s: float) -> bool:
    """True when ``counter()`` does not change for ``quiet_s`` seconds: with ``wait_for``, "this
    periodic activity has stopped" (a quiet spell longer than its period proves it)."""
    value = counter()
    return stays(lambda: counter() == value, quiet_s)
