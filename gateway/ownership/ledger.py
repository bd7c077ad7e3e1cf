"""The ownership ledger: object id → the tenant whose request created it, with a time to live.

- ``RedisLedger`` (``limits.redis_url``, else the cache's Redis): shared by every instance;
  one key per object, ``<limits.key_prefix>:object:<id>`` → tenant, expiring with ``EX``.
- ``SqliteLedger`` (``<data_dir>/objects.sqlite3``): shared by every worker on the host (WAL,
  a busy timeout for concurrent writers); expired rows are purged as new ones are written.
  Its calls run in a thread, never on the event loop.

Both raise on a failure: the stage refuses what it cannot check (503) rather than serve it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import redis.asyncio as aioredis


class Ledger(Protocol):
    async def owners(self, ids: list[str]) -> dict[str, str]: ...
    async def record(self, ids: Iterable[str], tenant: str, ttl_s: float | None = None) -> None: ...
    async def forget(self, object_id: str) -> None: ...
    async def close(self) -> None: ...


class RedisLedger:
    """The ledger in Redis (``url``), entries expiring ``ttl_s`` after they were written."""

    def __init__(self, url: str, prefix: str, ttl_s: float, timeout_s: float = 1.0):
        self._prefix = f"{prefix}:object:"
        self._ttl = max(1, int(ttl_s))
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=16, timeout=timeout_s,
                                                        socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._redis = aioredis.Redis(connection_pool=pool)

    async def owners(self, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        values = await self._redis.mget([self._prefix + i for i in ids])
        return {i: v.decode() if isinstance(v, bytes) else v for i, v in zip(ids, values) if v is not None}

    async def record(self, ids: Iterable[str], tenant: str, ttl_s: float | None = None) -> None:
        """``ids`` are ``tenant``'s for ``ttl_s`` seconds (at most the ledger's own TTL)."""
        ttl = self._ttl if ttl_s is None else max(1, min(self._ttl, int(ttl_s)))
        async with self._redis.pipeline(transaction=False) as pipe:
            for object_id in ids:
                pipe.set(self._prefix + object_id, tenant, ex=ttl)
            await pipe.execute()

    async def forget(self, object_id: str) -> None:
        await self._redis.delete(self._prefix + object_id)

    async def close(self) -> None:
        await self._redis.aclose()


class SqliteLedger:
    """The ledger in a SQLite file every worker on the host opens (``path``)."""

    def __init__(self, path: Path, ttl_s: float, clock=time.time):
        self._path, self._ttl, self._clock = path, ttl_s, clock
        self._lock = threading.Lock()  # one connection, used from the executor's threads in turn
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, timeout=10, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS objects (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, "
                       "expires REAL NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS objects_expires ON objects (expires)")
            self._db = db
        return self._db

    def _owners(self, ids: list[str]) -> dict[str, str]:
        with self._lock:
            marks = ",".join("?" * len(ids))
            rows = self._conn().execute(f"SELECT id, tenant FROM objects WHERE id IN ({marks}) AND expires > ?",
                                        (*ids, self._clock())).fetchall()
        return dict(rows)

    def _record(self, ids: list[str], tenant: str, ttl_s: float) -> None:
        now = self._clock()
        with self._lock:
            db = self._conn()
            db.execute("DELETE FROM objects WHERE expires <= ?", (now,))
            db.executemany("INSERT OR REPLACE INTO objects (id, tenant, expires) VALUES (?, ?, ?)",
                           [(i, tenant, now + ttl_s) for i in ids])

    def _forget(self, object_id: str) -> None:
        with self._lock:
            self._conn().execute("DELETE FROM objects WHERE id = ?", (object_id,))

    async def owners(self, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        out: dict[str, str] = {}
        for i in range(0, len(ids), 500):  # under SQLite's limit of bound parameters
            out.update(await asyncio.to_thread(self._owners, ids[i:i + 500]))
        return out

    async def record(self, ids: Iterable[str], tenant: str, ttl_s: float | None = None) -> None:
        """``ids`` are ``tenant``'s for ``ttl_s`` seconds (at most the ledger's own TTL)."""
        ttl = self._ttl if ttl_s is None else min(self._ttl, ttl_s)
        await asyncio.to_thread(self._record, list(ids), tenant, ttl)

    async def forget(self, object_id: str) -> None:
        await asyncio.to_thread(self._forget, object_id)

    async def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


__all__ = ["Ledger", "RedisLedger", "SqliteLedger"]
