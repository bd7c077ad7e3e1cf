"""One background task per vLLM server: read ``/health`` and ``/metrics`` every interval.

A good scrape stores a ``LoadSnapshot`` in ``HealthRegistry.loads[backend]`` (read by the
``vllm-load`` strategy). ``down_after`` failed scrapes in a row (an error status, a refused
connection, a timeout, text that is not vLLM metrics) take the server out of rotation: the
circuit of each of its targets is opened and held open while scrapes keep failing; the first
good scrape closes the circuits this scraper opened (not ones the request path opened on its
own since). A managed server starts out of rotation until its first good scrape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp

from gateway.config.models import Backend, CircuitBreakerSettings
from gateway.config.vllm import VllmScrape, server_root
from gateway.routing.health import CLOSED, HealthRegistry, TargetState
from gateway.vllm.metrics import LoadSnapshot, parse_metrics

log = logging.getLogger("gateway.vllm")


class Scraper:
    """Watches backend ``name``. ``targets``: the upstream model names the config routes to it
    (their circuits are opened while it is down, even before any request created them);
    ``breaker_settings``: ``routing.circuit_breaker``. ``metrics: False`` checks ``/health``
    only. ``up`` is None until the first verdict, then True/False."""

    def __init__(self, name: str, backend: Backend, settings: VllmScrape, health: HealthRegistry,
                 session_of: Callable[[], aiohttp.ClientSession], *, targets: tuple[str, ...] = (),
                 breaker_settings: CircuitBreakerSettings | None = None, metrics: bool = True,
                 start_down: bool = False):
        self.name = name
        self.settings = settings
        root = server_root(backend.base_url or "")
        self.metrics_url = settings.metrics_url or f"{root}/metrics"
        self.health_url = settings.health_url or f"{root}/health"
        headers = dict(backend.headers)
        if backend.api_key:
            headers["Authorization"] = f"Bearer {backend.api_key}"
        self._headers = headers
        self._health = health
        self._session_of = session_of
        self.targets = targets
        self.breaker_settings = breaker_settings or CircuitBreakerSettings()
        self.metrics = metrics
        self.up: bool | None = None
        self.consecutive_failures = 0
        self.scrapes = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_ok_at: float | None = None
        self.down_since: float | None = None
        self._opened: dict[str, float] = {}  # target key → the open-until this scraper set
        self._task: asyncio.Task | None = None
        if start_down:
            self.mark_down("starting")

    # -- the loop --------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"vllm-scraper-{self.name}")

    def close(self) -> None:
        """Stop scraping now; close the circuits it holds open and drop its snapshot."""
        if self._task is not None:
            self._task.cancel()
        self._release()
        self._health.loads.pop(self.name, None)

    async def stop(self) -> None:
        """``close()`` and wait for the task to end."""
        task, self._task = self._task, None
        self.close()
        if task is not None:
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        interval = self.settings.scrape_interval_ms / 1000
        while True:
            t0 = time.monotonic()
            await self.scrape_once()
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - t0)))

    async def scrape_once(self) -> bool:
        """One scrape; updates the snapshot and the in/out-of-rotation verdict."""
        self.scrapes += 1
        try:
            snapshot = await self._fetch()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure counts: the server cannot be trusted with traffic
            self.failures += 1
            self.consecutive_failures += 1
            self.last_error = _describe(exc)
            if self.up is not False and self.consecutive_failures >= self.settings.down_after:
                self.mark_down(self.last_error)
            elif self.up is False:
                self._hold_open()  # keep it out (and catch targets created since)
            return False
        self.consecutive_failures = 0
        self.last_error = None
        self.last_ok_at = self._health.clock()
        if snapshot is not None:
            self._health.loads[self.name] = snapshot
        if self.up is not True:
            self.mark_up()
        return True

    async def _fetch(self) -> LoadSnapshot | None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_ms / 1000)
        session = self._session_of()

        async def get(url: str) -> str:
            async with session.get(url, headers=self._headers, timeout=timeout, allow_redirects=False) as resp:
                text = await resp.text(errors="replace")
                if resp.status != 200:
                    raise ScrapeError(f"GET {url.rsplit('/', 1)[-1]} answered {resp.status}")
                return text

        if not self.metrics:
            await get(self.health_url)
            return None
        _, text = await asyncio.gather(get(self.health_url), get(self.metrics_url))
        return parse_metrics(text, self._health.clock(), self._health.loads.get(self.name), self._inflight())

    def _inflight(self) -> int:
        return sum(st.inflight for st in self._health.all() if st.backend == self.name)

    # -- rotation --------------------------------------------------------------------------
    def _states(self) -> list[TargetState]:
        for model in self.targets:  # create them, so that a first request cannot slip through
            self._health.state(self.name, model, self.breaker_settings)
        return [st for st in self._health.all() if st.backend == self.name]

    def _hold_open(self) -> None:
        interval = self.settings.scrape_interval_ms / 1000
        hold = max(self.breaker_settings.cooldown_s, 3 * interval + self.settings.timeout_ms / 1000)
        now = self._health.clock()
        for st in self._states():
            until = max(now + hold, st.breaker.opened_until if st.breaker.state != CLOSED else 0.0)
            st.breaker.trip(now, until=until)
            self._opened[st.key] = until

    def mark_down(self, reason: str) -> None:
        """Take the server out of rotation (also called by the launcher when its process exits)."""
        if self.up is not False:
            self.down_since = self._health.clock()
            if reason != "starting":
                log.warning("vLLM backend %r out of rotation: %s", self.name, reason)
        self.up = False
        self.last_error = reason if reason != "starting" else self.last_error
        self._health.loads.pop(self.name, None)
        self._hold_open()

    def mark_up(self) -> None:
        was_down = self.up is False
        self.up = True
        self.down_since = None
        self._release()
        if was_down:
            log.info("vLLM backend %r healthy: in rotation", self.name)

    def _release(self) -> None:
        for st in self._health.all():
            until = self._opened.get(st.key)
            if st.backend == self.name and until is not None and st.breaker.state != CLOSED \
                    and st.breaker.opened_until == until:
                st.breaker.reset()
        self._opened.clear()

    def status(self) -> dict:
        now = self._health.clock()
        snap = self._health.loads.get(self.name)
        return {"state": {None: "unknown", True: "up", False: "down"}[self.up],
                "metrics_url": self.metrics_url if self.metrics else None, "health_url": self.health_url,
                "scrapes": self.scrapes, "failures": self.failures,
                "consecutive_failures": self.consecutive_failures, "last_error": self.last_error,
                "down_for_s": None if self.down_since is None else round(now - self.down_since, 3),
                "snapshot": snap.as_dict(now) if snap is not None else None}


class ScrapeError(RuntimeError):
    """A scrape got an answer that is not a good one (an error status)."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ScrapeError):
        return str(exc)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "scrape timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"unreachable ({exc.os_error.strerror or exc.os_error})"
    return f"{type(exc).__name__}: {exc}"[:300]
