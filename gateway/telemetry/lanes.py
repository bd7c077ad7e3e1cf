"""Lanes for ops queries: bounded concurrency, a short wait, and cancellation.

The read-only store is shared by very different callers: an admin's ad-hoc SQL
(``/admin/query``), the dashboard's panels, ``/v1/feedback``'s look-ups of the request
being scored, and vector searches (the semantic cache's look-ups, collection searches). Each
gets a ``Lane`` of its own: at most ``concurrency`` queries at once, each on its own thread and
connection (chDB runs queries of several connections side by side, like a
server does), so a long ad-hoc query never holds up a panel. A query that finds its lane full
waits ``queue_wait_s`` at most, then fails with ``QueryBusy`` (the handlers answer 503 ``busy``).

Every statement run through a lane carries a tag (a leading SQL comment). When the caller goes
away (its client disconnected: aiohttp cancels the handler), the lane runs ``KILL QUERY`` for
the tag on a control connection; the statement stops at its next cancellation check, and its
slot is given back only then, so a lane never runs more than its share.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from gateway.config.telemetry import ClickHouseSettings, QueryLane, QuerySettings
from gateway.telemetry import vectors
from gateway.telemetry.clickhouse import ReadOnlyClient, parse_dsn

log = logging.getLogger("gateway.telemetry")
T = TypeVar("T")

ADHOC = "adhoc"
DASHBOARD = "dashboard"
LOOKUPS = "lookups"
VECTORS = "vectors"
LANES = (ADHOC, DASHBOARD, LOOKUPS, VECTORS)


class QueryBusy(RuntimeError):
    """The lane stayed full for its whole ``queue_wait_s``."""

    def __init__(self, lane: str, wait_s: float):
        super().__init__(f"the {lane} query lane is busy (all slots taken for {wait_s:g} s); try again shortly")
        self.lane = lane


class TaggedClient:
    """What a lane hands its work: ``query(sql, fmt, params)`` on the slot's connection, every
    statement marked with the slot's tag."""

    __slots__ = ("_client", "tag")

    def __init__(self, client: ReadOnlyClient, tag: str):
        self._client = client
        self.tag = tag

    def query(self, sql: str, fmt: str, params: dict[str, Any] | None = None) -> bytes:
        return self._client.query(sql, fmt, params, tag=self.tag)


class Lane:
    """``concurrency`` slots, each a thread with its own ``ReadOnlyClient``."""

    def __init__(self, name: str, cfg: QueryLane, make_client: Callable[[], ReadOnlyClient],
                 kill: Callable[[str], None]):
        self.name = name
        self.cfg = cfg
        self._make_client = make_client
        self._kill = kill
        self._sem = asyncio.Semaphore(cfg.concurrency)
        self._executor = ThreadPoolExecutor(max_workers=cfg.concurrency, thread_name_prefix=f"query-{name}")
        self._idle: list[ReadOnlyClient] = []
        self._idle_lock = threading.Lock()
        self._closed = False
        self.running = 0
        self.waiting = 0
        self.busy = 0  # queries refused: the lane stayed full
        self.cancelled = 0  # queries killed because their caller went away

    async def _acquire(self) -> None:
        if self.cfg.queue_wait_s <= 0 and self._sem.locked():
            raise QueryBusy(self.name, 0)
        self.waiting += 1
        try:
            async with asyncio.timeout(self.cfg.queue_wait_s or None):
                await self._sem.acquire()
        except TimeoutError:
            raise QueryBusy(self.name, self.cfg.queue_wait_s) from None
        finally:
            self.waiting -= 1

    async def run(self, fn: Callable[[TaggedClient], T]) -> T:
        """Run ``fn(client)`` on a free slot (blocking code: it runs on the slot's thread).
        Raises ``QueryBusy``, or what ``fn`` raises; cancelling the caller kills the query."""
        try:
            await self._acquire()
        except QueryBusy:
            self.busy += 1
            raise
        loop = asyncio.get_running_loop()
        tag = f"llm-gateway-query:{uuid.uuid4().hex}"
        self.running += 1

        def release(_future) -> None:
            def give_back() -> None:
                self.running -= 1
                self._sem.release()
            try:
                loop.call_soon_threadsafe(give_back)
            except RuntimeError:  # the loop is gone (shutdown)
                pass

        try:
            future = self._executor.submit(self._work, fn, tag)
        except RuntimeError:  # the lane is closed
            self.running -= 1
            self._sem.release()
            raise
        future.add_done_callback(release)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.done():
                self.cancelled += 1
                log.info("ops query in the %s lane abandoned by its caller: cancelling it", self.name)
                self._kill(tag)
            raise

    def _work(self, fn: Callable[[TaggedClient], T], tag: str) -> T:
        with self._idle_lock:
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = self._make_client()
        try:
            return fn(TaggedClient(client, tag))
        finally:
            with self._idle_lock:
                closed = self._closed
                if not closed:
                    self._idle.append(client)
            if closed:
                client.close()

    def stats(self) -> dict[str, int]:
        return {"concurrency": self.cfg.concurrency, "running": self.running, "waiting": self.waiting,
                "busy": self.busy, "cancelled": self.cancelled}

    def close(self) -> None:
        """Stop taking work and close the idle connections (busy ones close when they finish)."""
        with self._idle_lock:
            self._closed = True
            idle, self._idle = self._idle, []
        self._executor.shutdown(wait=False, cancel_futures=True)
        for client in idle:
            client.close()


class QueryLanes:
    """The lanes of one application, over the telemetry store (``dsn``), with the limits of
    ``telemetry.queries``; ``kill`` runs on a control connection and thread of its own.
    ``locate``: where the embedded store is served, for a ``chdb://`` DSN (``ReadOnlyClient``):
    the lanes then read it over HTTP."""

    def __init__(self, clickhouse: ClickHouseSettings, dsn: str, limits: QuerySettings, *,
                 locate: Callable[[], str] | None = None):
        self.limits = limits
        # The database the lanes' connections use; SQL that names its tables in full needs it.
        self.database = parse_dsn(dsn, clickhouse.database).database

        def maker(extra: dict[str, Any] | None) -> Callable[[], ReadOnlyClient]:
            return lambda: ReadOnlyClient(clickhouse, dsn, limits, locate=locate, extra_settings=extra)

        self._control = maker(None)()
        self._killer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="query-kill")
        self._lanes = {name: Lane(name, getattr(limits, name),
                                  maker(vectors.SEARCH_SETTINGS if name == VECTORS else None), self._kill)
                       for name in LANES}

    def _kill(self, tag: str) -> None:
        def kill() -> None:
            try:
                self._control.kill(tag)
            except Exception as exc:  # the store is down: the time limit ends the query anyway
                log.warning("could not cancel an abandoned ops query: %s", type(exc).__name__)
        try:
            self._killer.submit(kill)
        except RuntimeError:  # shutting down
            pass

    def lane(self, name: str) -> Lane:
        return self._lanes[name]

    async def query(self, lane: str, sql: str, fmt: str, params: dict[str, Any] | None = None) -> bytes:
        """One statement on ``lane``; its output in ClickHouse format ``fmt``."""
        return await self._lanes[lane].run(lambda client: client.query(sql, fmt, params))

    def stats(self) -> dict[str, dict[str, int]]:
        return {name: lane.stats() for name, lane in self._lanes.items()}

    def close(self) -> None:
        for lane in self._lanes.values():
            lane.close()
        self._killer.shutdown(wait=True)
        self._control.close()
