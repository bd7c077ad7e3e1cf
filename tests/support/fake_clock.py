"""A clock a test moves by hand, for time-based logic that takes an injectable clock (the
cache's entry ages and memory-store expiry): time passes exactly when the test says so, so
no test sleeps for a TTL and hopes the machine kept up."""

from __future__ import annotations


class FakeClock:
    """Call it for the time (seconds); ``advance(s)`` moves it forward."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
