"""Circuit state shared by every gateway instance through Redis (``routing.redis_url``).

When a breaker opens here, ``SET llm-gateway:circuit:<target> <open-until, epoch s> PX
<cooldown>`` tells the others; a poller (``MGET`` every ``interval_s``) opens local breakers
that another instance opened. The request path never waits on Redis: writes are
fire-and-forget tasks and reads happen on the poller. Redis being slow or down only means
each instance falls back to its own breakers (logged once per outage).
"""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis

from gateway.routing.health import CLOSED, HealthRegistry, TargetState

log = logging.getLogger("gateway.routing")
PREFIX = "llm-gateway:circuit:"


class SharedCircuits:
    """Mirror breaker openings through Redis. ``start()`` / ``stop()`` on the event loop."""

    def __init__(self, url: str, health: HealthRegistry, interval_s: float = 1.0, timeout_s: float = 0.25):
        self._redis = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
            url, max_connections=8, timeout=timeout_s, socket_timeout=timeout_s, socket_connect_timeout=timeout_s))
        self._health = health
        self._interval_s = interval_s
        self._task: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()
        self._healthy = True

    def attach(self, state: TargetState) -> None:
        """Publish this target's breaker openings."""
        state.breaker.on_open = lambda until_mono, key=state.key: self._publish(key, until_mono)

    def _publish(self, key: str, until_mono: float) -> None:
        ttl_s = until_mono - time.monotonic()
        if ttl_s <= 0:
            return
        task = asyncio.get_running_loop().create_task(
            self._safe(self._redis.set(PREFIX + key, repr(time.time() + ttl_s), px=int(ttl_s * 1000))))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _safe(self, coro):
        try:
            result = await coro
        except Exception as exc:  # redis down or slow: local breakers still work
            if self._healthy:
                log.warning("shared circuit state unavailable (%s); using per-process state", type(exc).__name__)
            self._healthy = False
            return None
        if not self._healthy:
            log.info("shared circuit state available again")
        self._healthy = True
        return result

    async def sync_once(self) -> None:
        """Open local breakers that another instance has opened."""
        states = self._health.all()
        if not states:
            return
        values = await self._safe(self._redis.mget([PREFIX + s.key for s in states]))
        if not values:
            return
        now_epoch, now_mono = time.time(), time.monotonic()
        for state, value in zip(states, values):
            if value is None or state.breaker.state != CLOSED:
                continue
            until_epoch = float(value)
            if until_epoch > now_epoch:
                state.breaker.trip(until=now_mono + (until_epoch - now_epoch))

    async def _poll(self) -> None:
        while True:
            await self.sync_once()
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for task in list(self._pending):
            await task
        await self._redis.aclose()
