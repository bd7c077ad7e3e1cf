"""Per-key limits: requests and tokens per minute, requests in flight, spend per day / month.

RPM and TPM are token buckets holding a minute's worth (``rpm`` requests, ``tpm`` tokens) and
refilling continuously, so ``x-ratelimit-reset-*`` is the time until the bucket is full again
(OpenAI's meaning). A request takes one request and its *estimated* tokens (prompt + its
``max_tokens`` or ``limits.default_max_tokens``) when admitted; ``settle`` corrects the token
bucket with the real usage afterwards (a refund, or a debt the next requests wait out), frees
the in-flight slot and adds the request's cost to the key's spend for the UTC day and month.

Two stores with one behaviour: ``MemoryLimits`` (one process; plain dicts, atomic because the
event loop runs one thing at a time) and ``RedisLimits`` (shared by every instance: one Lua
script admits atomically, using Redis' clock; another settles). ``Limiter`` wraps either and
applies ``limits.on_redis_error`` when Redis fails: fail open (counted, logged once per
outage, Redis skipped for ``redis_retry_s``) or fail closed (503).

One job per module: ``spec`` (the values), ``clock`` (UTC periods), ``estimate`` (the token
estimate), ``memory`` and ``redis_store`` (+ ``lua``) the stores, ``headers`` the response
headers; this module holds the ``Limiter`` and re-exports the names callers use.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.access.limits.clock import PeriodClock, periods
from gateway.access.limits.estimate import estimate_tokens
from gateway.access.limits.headers import budget_headers, duration, rate_headers, usd
from gateway.access.limits.memory import MemoryLimits
from gateway.access.limits.redis_store import RedisLimits
from gateway.access.limits.spec import TOO_LARGE, Decision, LimitSpec
from gateway.config.access import LimitSettings
from gateway.core.errors import ServiceUnavailableError

log = logging.getLogger("gateway.limits")


def _refused(exc: BaseException | None) -> bool:
    """Whether a store error comes from the network refusing or dropping the connection
    (an outage), as opposed to a slow call or a busy pool (load)."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, (ConnectionRefusedError, ConnectionResetError, BrokenPipeError)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class Limiter:
    """A store plus the Redis-failure policy, and counters for ``/admin/access``.

    ``admit`` never raises for a store failure with ``on_redis_error: allow`` (it returns a
    ``degraded`` decision); with ``reject`` it raises ``ServiceUnavailableError`` (503).
    ``settle`` never raises; with Redis it runs as a background task so the response is not
    held back.
    """

    def __init__(self, settings: LimitSettings):
        self.settings = settings
        self.shared = settings.redis_url is not None
        self.store: RedisLimits | MemoryLimits
        # the in-process store answers synchronously (no task, no await on the request path)
        self._local: MemoryLimits | None = None
        if settings.redis_url is not None:
            self.store = RedisLimits(settings)
        else:
            self.store = self._local = MemoryLimits(settings.concurrency_lease_s)
        self._fail_open = settings.on_redis_error == "allow"
        self._skip_until = 0.0
        self._down = False
        self._consecutive = 0
        self._pending: set[asyncio.Task] = set()
        self.stats = {"admitted": 0, "rejected": 0, "store_errors": 0, "failed_open": 0, "failed_closed": 0}

    def adopt(self, settings: LimitSettings) -> bool:
        """Take new settings in place when they keep the same store (counters survive a reload)."""
        old = self.settings
        store = ("redis_url", "redis_timeout_ms", "redis_connect_timeout_ms", "redis_pool_timeout_ms",
                 "redis_max_connections", "key_prefix")
        if any(getattr(settings, name) != getattr(old, name) for name in store):
            return False
        self.settings = settings
        self._fail_open = settings.on_redis_error == "allow"
        self.store._lease_s = settings.concurrency_lease_s
        return True

    def _failed(self, exc: BaseException, what: str) -> None:
        """Count a store failure. A refused/reset connection, or three failures in a row, mean an
        outage: Redis is then skipped for ``redis_retry_s`` (no request waits on a dead store) and
        it is logged once. A lone timeout only fails the request at hand."""
        self.stats["store_errors"] += 1
        self._consecutive += 1
        if self._consecutive < 3 and not _refused(exc):
            log.debug("rate-limit store failed during %s (%s)", what, type(exc).__name__)
            return
        self._skip_until = time.monotonic() + self.settings.redis_retry_s
        if not self._down:
            self._down = True
            log.error("rate-limit store unreachable during %s (%s); %s until it answers again", what,
                      type(exc).__name__, "serving without limits" if self._fail_open else "rejecting requests (503)")

    def _unavailable(self) -> Decision:
        if self._fail_open:
            self.stats["failed_open"] += 1
            return Decision(True, degraded=True)
        self.stats["failed_closed"] += 1
        raise ServiceUnavailableError("The gateway's rate-limit store is unavailable; try again shortly.",
                                      code="limits_unavailable", headers={"Retry-After": "1"})

    async def admit(self, spec: LimitSpec, request_id: str, tokens: int) -> Decision:
        if self._local is not None:
            decision = self._local.admit_now(spec, request_id, tokens)
        else:
            if self._skip_until and time.monotonic() < self._skip_until:
                return self._unavailable()
            try:
                decision = await self.store.admit(spec, request_id, tokens)
            except Exception as exc:  # redis errors, timeouts, pool exhaustion
                self._failed(exc, "admission")
                return self._unavailable()
            self._consecutive = 0
            if self._down:
                self._down = False
                self._skip_until = 0.0
                log.warning("rate-limit store answers again; limits enforced")
        self.stats["admitted" if decision.ok else "rejected"] += 1
        return decision

    def settle(self, spec: LimitSpec, request_id: str, token_delta: int, cost: float, reserved: bool) -> None:
        if self._local is not None:
            self._local.settle_now(spec, request_id, token_delta, cost, reserved)
            return
        if self._skip_until and time.monotonic() < self._skip_until:
            return
        task = asyncio.get_running_loop().create_task(self._settle(spec, request_id, token_delta, cost, reserved))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _settle(self, spec, request_id, token_delta, cost, reserved) -> None:
        try:
            await self.store.settle(spec, request_id, token_delta, cost, reserved)
        except Exception as exc:
            self._failed(exc, "settlement")

    async def drain(self) -> None:
        """Wait for background settlements (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def usage(self, spec: LimitSpec) -> dict:
        try:
            return await self.store.usage(spec)
        except Exception as exc:
            return {"error": f"store unavailable ({type(exc).__name__})"}

    async def close(self) -> None:
        await self.drain()
        await self.store.close()


__all__ = ["TOO_LARGE", "Decision", "LimitSpec", "Limiter", "MemoryLimits", "PeriodClock", "RedisLimits",
           "budget_headers", "duration", "estimate_tokens", "periods", "rate_headers", "usd"]
