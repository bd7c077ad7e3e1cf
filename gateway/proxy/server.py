"""Running the application: in the foreground (``serve``) or on a background thread.

Both run aiohttp with ``handler_cancellation=True``: without it aiohttp does not cancel a
handler when its client disconnects, and a non-streamed request would keep its upstream call
running to the end. Malformed requests are counted and summarised in a rate-limited warning
instead of a traceback each (``http_hygiene.ProtocolErrorLog``). The foreground server uses
uvloop and stops gracefully on SIGTERM/SIGINT (stop accepting, let in-flight requests finish
within ``shutdown_timeout`` seconds, then run the cleanup hooks).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import threading

from aiohttp import web

from gateway.proxy.http_hygiene import ProtocolErrorLog

# Start-up and shutdown lines go through logging, so ``--log-format json`` covers them too.
log = logging.getLogger("gateway.server")

# The cyclic collector's first threshold for a serving process (Python's default: 700). It counts
# container objects alive beyond those at the last pass, and a few dozen requests in flight
# cross 700 many times a second, though they leave almost no cycles behind: each pass then
# walks the young objects, and every tenth the next generation, and so on up to a pass over
# the whole heap (the config, templates, encodings), about a tenth of the gateway's CPU under
# load in the bench (docs/benchmarks.md). Above in-flight churn, passes come when garbage
# cycles actually pile up.
YOUNG_GENERATION_THRESHOLD = 10_000


async def start_site(app: web.Application, host: str, port: int, *, reuse_port: bool = False,
                     shutdown_timeout: float = 30.0) -> tuple[web.AppRunner, int]:
    """Start serving ``app``; returns the runner and the bound port (useful when ``port`` is 0)."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=shutdown_timeout,
                           logger=ProtocolErrorLog())
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None, backlog=1024)
    await site.start()
    bound = port
    for s in runner.sites:
        server = getattr(s, "_server", None)
        if server and server.sockets:
            bound = server.sockets[0].getsockname()[1]
    return runner, bound


def run_forever(app: web.Application, host: str, port: int, *, reuse_port: bool = False) -> None:
    """Serve until SIGTERM/SIGINT on a uvloop event loop (falls back to asyncio's)."""
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])
    try:
        import uvloop
        runner_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner_factory = None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # before start-up: a stop while starting is clean too
            loop.add_signal_handler(sig, stop.set)
        runner, bound = await start_site(app, host, port, reuse_port=reuse_port)
        log.info("llm-gateway listening on http://%s:%s", host, bound)
        await stop.wait()
        log.info("llm-gateway shutting down")
        await runner.cleanup()

    with asyncio.Runner(loop_factory=runner_factory) as r:
        r.run(main())


def run_workers(app_factory, host: str, port: int, workers: int) -> None:
    """Serve with ``workers`` processes sharing one port through ``SO_REUSEPORT``.

    ``app_factory()`` builds a fresh application in each worker (each has its own event loop,
    upstream session and resources); the kernel spreads connections across them. A worker that
    dies (a crash, ``kill -9``) is replaced; every worker dies with this process, so a
    ``kill -9`` of ``serve`` leaves none serving unsupervised. The parent forwards
    SIGTERM/SIGINT to the workers and exits when they have all stopped (with the first
    non-zero exit code, if any).
    """
    import multiprocessing
    from multiprocessing.connection import wait

    if workers <= 1:
        run_forever(app_factory(), host, port)
        return
    ctx = multiprocessing.get_context("fork")  # fork before any event loop exists
    parent = os.getpid()

    def worker() -> None:
        _die_with(parent)
        run_forever(app_factory(), host, port, reuse_port=True)

    def spawn(i: int):
        proc = ctx.Process(target=worker, name=f"gateway-worker-{i}")
        proc.start()
        return proc

    procs = [spawn(i) for i in range(workers)]
    stopping = False

    def forward(signum, _frame):
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while not stopping:
        wait([p.sentinel for p in procs], timeout=1.0)
        for i, proc in enumerate(procs):
            if not stopping and proc.exitcode is not None:
                log.error("worker %d (pid %s) exited with %s; starting another", i, proc.pid, proc.exitcode)
                procs[i] = spawn(i)
    for proc in procs:
        proc.join()
    codes = [p.exitcode for p in procs if p.exitcode]
    if codes:
        raise SystemExit(codes[0])


def _die_with(parent: int) -> None:
    """Have the kernel SIGTERM this process when its parent dies (Linux ``PR_SET_PDEATHSIG``)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: nothing to ask for
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


class BackgroundServer:
    """Serve an application on a loopback port from a daemon thread with its own loop.

    ``with BackgroundServer(app) as srv: srv.url`` → ``http://127.0.0.1:PORT``. Used by the
    demo and the tests; ``call(coro)`` runs a coroutine on the server's loop.
    """

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self.host = host
        self.port = port
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="gateway-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def call(self, coro, timeout: float = 30.0):
        """Run ``coro`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        self._runner, self.port = self.call(start_site(self.app, self.host, self.port, shutdown_timeout=2.0))
        return self

    def __exit__(self, *exc) -> None:
        if self._runner is not None:
            self.call(self._runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def free_port(host: str = "127.0.0.1") -> int:
    """An unused TCP port on ``host`` (for tests and the demo)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
