"""Per-target health: circuit breaker, in-flight count and latency EWMAs.

``TargetState`` lives in a ``HealthRegistry`` that outlives config reloads, so targets that
still exist after a reload keep their breaker state and EWMAs. Time comes from an injectable
``clock`` (seconds, monotonic) so tests can drive cooldowns without sleeping.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from gateway.config.models import CircuitBreakerSettings

Clock = Callable[[], float]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """Closed → open after ``consecutive_failures`` failures in a row or a failure rate above
    ``error_rate`` over ``window_s`` (with ``min_requests``); open → half-open after
    ``cooldown_s``, when exactly one probe is let through; the probe's outcome closes or
    re-opens it. ``on_open(until)`` is called when it opens (to share the state)."""

    __slots__ = ("settings", "_clock", "state", "opened_at", "_consecutive", "_window", "_probe_out",
                 "on_open", "opened_until")

    def __init__(self, settings: CircuitBreakerSettings, clock: Clock = time.monotonic):
        self.settings = settings
        self._clock = clock
        self.state = CLOSED
        self.opened_at = 0.0
        self.opened_until = 0.0
        self._consecutive = 0
        self._window: deque[tuple[float, bool]] = deque()
        self._probe_out = False
        self.on_open: Callable[[float], None] | None = None

    def allow(self) -> bool:
        """Whether a request may be sent now (claims the probe when half-open)."""
        if not self.settings.enabled or self.state == CLOSED:
            return True
        now = self._clock()
        if self.state == OPEN:
            if now < self.opened_until:
                return False
            self.state = HALF_OPEN
            self._probe_out = False
        if self._probe_out:
            return False
        self._probe_out = True
        return True

    def peek(self) -> str:
        """The state as a request would see it now, without claiming a probe."""
        if self.state == OPEN and self._clock() >= self.opened_until:
            return HALF_OPEN
        return self.state

    def record(self, ok: bool) -> None:
        """Record the outcome of a request this breaker allowed."""
        if not self.settings.enabled:
            return
        now = self._clock()
        s = self.settings
        if self.state == HALF_OPEN:
            self._probe_out = False
            if ok:
                self._close()
            else:
                self.trip(now)
            return
        window = self._window
        window.append((now, ok))
        horizon = now - s.window_s
        while window and window[0][0] < horizon:
            window.popleft()
        if ok:
            self._consecutive = 0
            return
        self._consecutive += 1
        if self._consecutive >= s.consecutive_failures:
            self.trip(now)
            return
        if len(window) >= s.min_requests:
            failures = sum(1 for _, good in window if not good)
            if failures / len(window) > s.error_rate:
                self.trip(now)

    def trip(self, now: float | None = None, until: float | None = None) -> None:
        """Open the circuit (until ``until``, default now + cooldown)."""
        now = self._clock() if now is None else now
        self.state = OPEN
        self.opened_at = now
        self.opened_until = until if until is not None else now + self.settings.cooldown_s
        self._consecutive = 0
        self._window.clear()
        if self.on_open is not None and until is None:
            self.on_open(self.opened_until)

    def reset(self) -> None:
        """Close now: a health check saw the target recover (``gateway.vllm`` scrapers)."""
        self._probe_out = False
        self._close()

    def _close(self) -> None:
        self.state = CLOSED
        self._consecutive = 0
        self._window.clear()


class TargetState:
    """Live state of one target (backend + upstream model).

    ``inflight``: requests from this process now in flight. ``ewma_ttft_ms`` /
    ``ewma_latency_ms``: exponentially weighted moving averages (ms), ``None`` until the first
    sample.
    """

    __slots__ = ("key", "backend", "breaker", "inflight", "ewma_ttft_ms", "ewma_latency_ms", "requests",
                 "failures", "ewma_alpha")

    def __init__(self, key: str, backend: str, breaker: CircuitBreaker):
        self.key = key
        self.backend = backend
        self.breaker = breaker
        self.inflight = 0
        self.ewma_ttft_ms: float | None = None
        self.ewma_latency_ms: float | None = None
        self.requests = 0
        self.failures = 0
        self.ewma_alpha = 0.3  # set from routing.ewma_alpha by the router

    def observe_latency(self, alpha: float, latency_ms: float, ttft_ms: float | None) -> None:
        """Fold one successful request's latency (and TTFT for streams) into the EWMAs."""
        prev = self.ewma_latency_ms
        self.ewma_latency_ms = latency_ms if prev is None else prev + alpha * (latency_ms - prev)
        if ttft_ms is not None:
            prev = self.ewma_ttft_ms
            self.ewma_ttft_ms = ttft_ms if prev is None else prev + alpha * (ttft_ms - prev)

    def snapshot(self) -> dict:
        """A JSON-able view for ``/admin/backends``."""
        return {"target": self.key, "backend": self.backend, "circuit": self.breaker.peek(),
                "inflight": self.inflight, "ewma_ttft_ms": self.ewma_ttft_ms,
                "ewma_latency_ms": self.ewma_latency_ms, "requests": self.requests, "failures": self.failures}


class HealthRegistry:
    """All ``TargetState``s by key (``backend/model``); survives config reloads."""

    def __init__(self, clock: Clock = time.monotonic):
        self.clock = clock
        self._states: dict[str, TargetState] = {}
        self.on_new: Callable[[TargetState], None] | None = None  # e.g. share its breaker via Redis
        # Load the backends report themselves, by backend name (``gateway.vllm`` scrapers fill it
        # with ``LoadSnapshot``s; the ``vllm-load`` strategy reads it).
        self.loads: dict[str, Any] = {}

    def use_clock(self, clock: Clock) -> None:
        """Read time from ``clock`` from now on, in every breaker (tests move time by hand)."""
        self.clock = clock
        for st in self._states.values():
            st.breaker._clock = clock

    def state(self, backend: str, model: str, settings: CircuitBreakerSettings) -> TargetState:
        """The state for a target, created on first use; a reload's new breaker settings apply."""
        key = f"{backend}/{model}"
        st = self._states.get(key)
        if st is None:
            st = TargetState(key, backend, CircuitBreaker(settings, self.clock))
            self._states[key] = st
            if self.on_new is not None:
                self.on_new(st)
        else:
            st.breaker.settings = settings
        return st

    def retain(self, keys: set[str]) -> None:
        """Forget targets that no longer exist in the config."""
        for key in list(self._states):
            if key not in keys:
                del self._states[key]

    def all(self) -> list[TargetState]:
        return list(self._states.values())
