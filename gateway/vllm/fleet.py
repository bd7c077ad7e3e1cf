"""The fleet: a scraper per ``type: vllm`` backend and a supervisor per ``launch:`` block,
kept in step with the config in force.

``sync(config)`` runs on every config made current (start-up and each reload): scrapers and
managed servers of new backends start, those of removed backends stop, changed ones restart.
A reload that leaves a ``launch:`` block as it was leaves its server running. ``stop()`` on
shutdown stops the scrapers and every managed server.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp

from gateway.config.adapters import Adapter, adapters_of_backends
from gateway.config.models import Backend, GatewayConfig
from gateway.config.vllm import VllmLaunch, VllmScrape
from gateway.routing.health import HealthRegistry
from gateway.vllm.adapters import AdapterReconciler
from gateway.vllm.launcher import ManagedServer, launch_argv
from gateway.vllm.scraper import Scraper

log = logging.getLogger("gateway.vllm")


def targets_by_backend(cfg: GatewayConfig) -> dict[str, tuple[str, ...]]:
    """Upstream model names the config routes to each backend (as the router keys targets)."""
    out: dict[str, set[str]] = {}
    for public, m in cfg.models.items():
        for t in m.targets:
            out.setdefault(t.backend, set()).add(t.model or public)
    for r in cfg.routes:
        for t in r.targets or ():
            model = t.model or r.model
            if model:
                out.setdefault(t.backend, set()).add(model)
    return {name: tuple(sorted(models)) for name, models in out.items()}


class Fleet:
    """Scrapers and managed servers. ``log_dir``: where managed servers' logs go (unless their
    ``launch.log_file`` says otherwise). ``launch_servers``: False in processes that must not
    start servers (``serve --workers N`` workers; one launcher runs beside them).
    ``manage_adapters``: False in gateways that must not load or unload the config's adapters
    on the servers (``eval run``'s in-process gateway: the servers are production's)."""

    def __init__(self, health: HealthRegistry, log_dir: Path, launch_servers: bool = True,
                 manage_adapters: bool = True):
        self._health = health
        self._log_dir = Path(log_dir)
        self.launch_servers = launch_servers
        self.manage_adapters = manage_adapters
        self.scrapers: dict[str, Scraper] = {}
        self.servers: dict[str, ManagedServer] = {}
        self._scrape_specs: dict[str, tuple] = {}
        self._launch_specs: dict[str, tuple | None] = {}
        self._session: aiohttp.ClientSession | None = None
        self._pending: GatewayConfig | None = None
        self._started = False
        self._background: set[asyncio.Task] = set()
        self.adapters = AdapterReconciler(self._session_of, ready=self._not_down)
        self._lora: dict[str, dict[str, Adapter]] = {}

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._started = True
        if self._pending is not None:
            cfg, self._pending = self._pending, None
            self.sync(cfg)

    async def stop(self) -> None:
        self._started = False
        self.adapters.stop()
        for name in list(self.scrapers):
            self._close_scraper(name)
        servers, self.servers = list(self.servers.values()), {}
        self._launch_specs.clear()
        await asyncio.gather(*(s.stop() for s in servers), *list(self._background), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _not_down(self, name: str) -> bool:
        """Whether adapters can be loaded on a backend now: not while its scraper sees it down
        (a managed server starting: it loads its --lora-modules itself)."""
        scraper = self.scrapers.get(name)
        return scraper is None or scraper.up is not False

    def _session_of(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("User-Agent",))
        return self._session

    # -- keeping in step with the config -----------------------------------------------------
    def sync(self, cfg: GatewayConfig) -> None:
        """Start, stop and restart scrapers and servers to match ``cfg`` (no waiting)."""
        if not self._started:
            self._pending = cfg
            return
        targets = targets_by_backend(cfg)
        breaker = cfg.routing.circuit_breaker
        if self.manage_adapters:
            self.adapters.sync(cfg)
        lora = adapters_of_backends(cfg)
        self._lora = lora
        wanted: dict[str, tuple[Backend, VllmScrape, VllmLaunch | None]] = {}
        for name, b in cfg.backends.items():
            if b.type != "vllm":
                continue
            settings = b.vllm or VllmScrape()
            launch = b.launch if self.launch_servers else None
            if settings.enabled or launch is not None:
                wanted[name] = (b, settings, launch)
        # Managed servers first: a changed launch block restarts the server and its scraper.
        for name in list(self.servers):
            entry = wanted.get(name)
            if entry is None or entry[2] is None \
                    or self._launch_spec(name, entry[0], entry[2]) != self._launch_specs.get(name):
                self._stop_server(name)
            else:  # a promoted version is loaded at run time; a restart starts with it
                self.servers[name].argv = launch_argv(entry[0], entry[2], lora.get(name))
        for name in list(self.scrapers):
            if name not in wanted or self._scrape_spec(*wanted[name]) != self._scrape_specs.get(name) \
                    or (wanted[name][2] is not None and name not in self.servers):
                self._close_scraper(name)
        for name, (b, settings, launch) in wanted.items():
            scraper = self.scrapers.get(name)
            if scraper is None:
                scraper = Scraper(name, b, settings, self._health, self._session_of, targets=targets.get(name, ()),
                                  breaker_settings=breaker, metrics=settings.enabled,
                                  start_down=launch is not None)
                self.scrapers[name] = scraper
                self._scrape_specs[name] = self._scrape_spec(b, settings, launch)
                scraper.start()
            else:
                scraper.targets = targets.get(name, ())
                scraper.breaker_settings = breaker
            if launch is not None and name not in self.servers:
                self._start_server(name, b, launch, scraper)

    @staticmethod
    def _scrape_spec(b: Backend, settings: VllmScrape, launch) -> tuple:
        return (b.base_url, b.api_key, tuple(sorted(b.headers.items())), settings, launch is not None)

    def _launch_spec(self, name: str, b: Backend, launch: VllmLaunch | None) -> tuple | None:
        # Adapters count by name and rank (the server's LoRA slots), not path: a new version is
        # loaded at run time, an added adapter restarts the server with one more slot.
        adapters = self._lora.get(name, {})
        return None if launch is None else (b.base_url, launch, tuple(sorted(adapters)),
                                            max((a.max_rank for a in adapters.values()), default=0))

    def _close_scraper(self, name: str) -> None:
        scraper = self.scrapers.pop(name)
        self._scrape_specs.pop(name, None)
        scraper.close()

    def _start_server(self, name: str, b: Backend, launch, scraper: Scraper) -> None:
        log_path = Path(launch.log_file) if launch.log_file else self._log_dir / f"{name}.log"
        server = ManagedServer(name, b, launch, log_path, on_exit=scraper.mark_down,
                               healthy=lambda: scraper.up is True, adapters=self._lora.get(name))
        self.servers[name] = server
        self._launch_specs[name] = self._launch_spec(name, b, launch)
        previous = [t for t in self._background if t.get_name() == f"vllm-stop-{name}"]

        async def start_after_previous() -> None:
            if previous:  # the old server of this backend must free its port first
                await asyncio.gather(*previous, return_exceptions=True)
            if self.servers.get(name) is server and self._started:
                server.start()

        task = asyncio.get_running_loop().create_task(start_after_previous())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _stop_server(self, name: str) -> None:
        server = self.servers.pop(name)
        self._launch_specs.pop(name, None)
        task = asyncio.get_running_loop().create_task(server.stop(), name=f"vllm-stop-{name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- views -----------------------------------------------------------------------------
    def status(self) -> dict:
        """``GET /admin/vllm``: each watched backend's scrape state, snapshot and managed server."""
        out = []
        for name, scraper in self.scrapers.items():
            entry = {"backend": name, **scraper.status()}
            server = self.servers.get(name)
            entry["managed"] = server.status() if server is not None else None
            entry["adapters"] = self.adapters.status(name)
            out.append(entry)
        return {"backends": out, "launch_servers": self.launch_servers}


def describe_backend(b: Backend) -> str:
    """One line for ``check-config``: how a vLLM backend is watched and whether it is managed."""
    s = b.vllm or VllmScrape()
    watch = (f"metrics every {s.scrape_interval_ms:g} ms, out after {s.down_after} failed scrapes"
             if s.enabled else "metrics scraping off")
    if b.launch is None:
        return watch
    return f"{watch}; managed: starts {b.launch.model}" + (
        f" as {b.launch.served_model_name}" if b.launch.served_model_name else "")
