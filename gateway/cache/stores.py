"""Cache stores: an in-process LRU bounded by bytes, and Redis.

Both offer ``await get(key) -> CacheEntry | None``, ``await set(key, entry, ttl_s)``,
``await start()`` / ``await close()``. A store never raises to its caller: a failure (Redis
down, slow, a corrupt value) is counted in ``CacheStats`` and answered as "not cached".

- ``MemoryStore``: ``OrderedDict`` LRU; each entry expires ``ttl_s`` seconds after it was
  stored (monotonic clock); inserting beyond ``max_bytes`` evicts the least recently used.
- ``RedisStore``: ``GET`` / ``SET … PX``; a ``BlockingConnectionPool`` sized for high
  concurrency (the default pool raises at its limit; this one waits up to ``timeout_s``), short
  socket timeouts, and after a failure Redis is skipped for ``retry_s`` seconds so an outage
  costs requests nothing (logged once per outage).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import redis.asyncio as aioredis

from gateway.cache.entry import CacheEntry

log = logging.getLogger("gateway.cache")


@dataclass(slots=True)
class CacheStats:
    """Counters of one cache (all since start-up).

    ``hits`` / ``misses`` / ``bypasses`` / ``coalesced``: requests by cache status.
    ``stores``: entries written. ``not_stored``: answers not stored (error, cut stream, no
    finish reason, too large, ``no-store``). ``evictions``: LRU evictions (memory).
    ``errors``: store operations that failed (Redis down or slow, corrupt values).
    ``skipped``: operations not attempted because the store was marked down.
    The semantic layer's: ``semantic_hits`` (answered from a near question), ``semantic_misses``
    (looked up, nothing near enough), ``semantic_stores`` (entries written to the request log),
    ``semantic_errors`` (embedding calls or look-ups that failed or timed out: misses).
    """

    hits: int = 0
    misses: int = 0
    bypasses: int = 0
    coalesced: int = 0
    stores: int = 0
    not_stored: int = 0
    evictions: int = 0
    errors: int = 0
    skipped: int = 0
    semantic_hits: int = 0
    semantic_misses: int = 0
    semantic_stores: int = 0
    semantic_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict."""
        return asdict(self)


class MemoryStore:
    """In-process LRU of ``CacheEntry`` objects bounded by ``max_bytes`` (entry ``size``)."""

    kind: Literal["memory"] = "memory"
    available = True  # never down

    def __init__(self, max_bytes: int, stats: CacheStats, clock=time.monotonic):
        self.max_bytes = max_bytes
        self.stats = stats
        self._clock = clock
        self._data: OrderedDict[str, tuple[CacheEntry, float]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._data)

    async def start(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Drop every entry."""
        self.clear()

    def get_nowait(self, key: str) -> CacheEntry | None:
        """The live entry under ``key`` (marked most recently used), or None."""
        item = self._data.get(key)
        if item is None:
            return None
        entry, expires = item
        if self._clock() >= expires:
            del self._data[key]
            self._dropped(entry)
            return None
        self._data.move_to_end(key)
        return entry

    async def get(self, key: str) -> CacheEntry | None:
        """See ``get_nowait``."""
        return self.get_nowait(key)

    def set_nowait(self, key: str, entry: CacheEntry, ttl_s: float) -> bool:
        """Store ``entry`` for ``ttl_s`` seconds; False if it can never fit."""
        size = entry.size
        if size > self.max_bytes:
            return False
        data = self._data
        old = data.pop(key, None)
        if old is not None:
            self._dropped(old[0])
        self._evict(size, keep=0)
        data[key] = (entry, self._clock() + ttl_s)
        self.bytes += size
        entry.on_grow = self._grown
        return True

    def _grown(self, entry: CacheEntry, n: int) -> None:
        """``entry`` (in this store) keeps a new form of ``n`` bytes: count it, and make room by
        evicting the least recently used others (the entry just served is the most recent)."""
        self.bytes += n
        self._evict(0, keep=1)

    def _evict(self, size: int, keep: int) -> None:
        data = self._data
        while len(data) > keep and self.bytes + size > self.max_bytes:
            _, (evicted, _) = data.popitem(last=False)
            self._dropped(evicted)
            self.stats.evictions += 1

    def _dropped(self, entry: CacheEntry) -> None:
        self.bytes -= entry.size
        entry.on_grow = None  # still served by requests in flight: its forms no longer count here

    async def set(self, key: str, entry: CacheEntry, ttl_s: float) -> bool:
        """See ``set_nowait``."""
        return self.set_nowait(key, entry, ttl_s)

    async def delete(self, key: str) -> bool:
        """Drop the entry under ``key`` (if any); always done."""
        item = self._data.pop(key, None)
        if item is not None:
            self._dropped(item[0])
        return True

    def clear(self) -> None:
        """Drop every entry."""
        for entry, _ in self._data.values():
            entry.on_grow = None
        self._data.clear()
        self.bytes = 0


class RedisStore:
    """Entries in Redis under their keys (``CacheEntry.encode``), expiring through ``PX``.

    ``url``: ``redis://host:port/db``. ``timeout_s``: socket connect/read timeout and the
    longest wait for a pooled connection. ``max_connections``: pool size. ``retry_s``: how
    long to skip Redis after a failure.
    """

    kind: Literal["redis"] = "redis"

    def __init__(self, url: str, stats: CacheStats, *, timeout_s: float = 0.25, max_connections: int = 32,
                 retry_s: float = 1.0):
        self.url = url
        self.stats = stats
        self._retry_s = retry_s
        # Connections open lazily: creating the pool never fails on a down Redis.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout_s, socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s)
        self._redis: aioredis.Redis | None = aioredis.Redis(connection_pool=pool)
        self._down_until = 0.0
        self._healthy = True

    async def start(self) -> None:
        """Open a first connection (``PING``); a failure only logs and marks Redis down."""
        if self._redis is None:
            return
        try:
            await self._redis.ping()
        except Exception as exc:
            self._failed("PING", exc)

    async def close(self) -> None:
        """Close the pool."""
        if self._redis is not None:
            redis, self._redis = self._redis, None
            try:
                await redis.aclose()
            except Exception:  # closing a broken pool must not fail shutdown
                pass

    @property
    def available(self) -> bool:
        """False while Redis is considered down (after a failure, for ``retry_s`` seconds)."""
        return self._redis is not None and time.monotonic() >= self._down_until

    def _failed(self, what: str, exc: BaseException) -> None:
        self.stats.errors += 1
        self._down_until = time.monotonic() + self._retry_s
        if self._healthy:
            log.warning("cache: Redis %s failed (%s: %s); requests go uncached, retrying in %g s",
                        what, type(exc).__name__, exc, self._retry_s)
        self._healthy = False

    def _ok(self) -> None:
        if not self._healthy:
            log.info("cache: Redis is answering again")
        self._healthy = True

    async def get(self, key: str) -> CacheEntry | None:
        """The entry under ``key``; None when absent, undecodable or Redis unavailable."""
        if not self.available or self._redis is None:
            self.stats.skipped += 1
            return None
        try:
            data = await self._redis.get(key)
        except Exception as exc:
            self._failed("GET", exc)
            return None
        self._ok()
        if not isinstance(data, bytes):  # absent (the pool never decodes replies to str)
            return None
        try:
            return CacheEntry.decode(data)
        except ValueError as exc:
            self.stats.errors += 1
            log.warning("cache: dropping undecodable entry %s (%s)", key, exc)
            return None

    async def set(self, key: str, entry: CacheEntry, ttl_s: float) -> bool:
        """``SET key value PX ttl``; False when Redis is unavailable or failed."""
        if not self.available or self._redis is None:
            self.stats.skipped += 1
            return False
        try:
            await self._redis.set(key, entry.encode(), px=max(1, int(ttl_s * 1000)))
        except Exception as exc:
            self._failed("SET", exc)
            return False
        self._ok()
        return True

    async def delete(self, key: str) -> bool:
        """``DEL key``; False when Redis is unavailable or failed (the entry may still be there)."""
        if not self.available or self._redis is None:
            self.stats.skipped += 1
            return False
        try:
            await self._redis.delete(key)
        except Exception as exc:
            self._failed("DEL", exc)
            return False
        self._ok()
        return True


def store_signature(settings: Any, memory_bytes: int) -> tuple:
    """What a store ``build_store`` makes from ``cache:`` settings depends on: a new store is
    built (and the old one closed) only when this changes."""
    s = settings
    if s.store == "redis":
        return ("redis", s.redis_url, s.redis_timeout_s, s.redis_max_connections, s.redis_retry_s)
    return ("memory", memory_bytes)


def build_store(settings: Any, stats: CacheStats, memory_bytes: int,
                clock: Callable[[], float] = time.monotonic) -> MemoryStore | RedisStore:
    """The store ``cache:`` settings name: Redis, or this process's memory bounded at ``memory_bytes``."""
    s = settings
    if s.store == "redis":
        assert s.redis_url is not None  # the config refuses a redis store without one
        return RedisStore(s.redis_url, stats, timeout_s=s.redis_timeout_s, max_connections=s.redis_max_connections,
                          retry_s=s.redis_retry_s)
    return MemoryStore(memory_bytes, stats, clock=clock)
