"""``llm-gateway serve`` as a real subprocess, for the tests that kill, starve or duplicate it.

``Gateway`` starts one on a data folder of its own and waits for ``/readyz``; ``rows`` asks it
(``/admin/query``) how many rows each request of a load has; ``assert_exactly_once`` polls
until every answered request of a ``Load`` has its row and fails on any duplicate. The two
crash scenarios (``kill -9`` of the serving process, of the ingester) are here too, so the
embedded-store and the server-store tests run the very same steps.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from tests.support.load import Load
from tests.support.polling import wait_for
from tests.support.telemetry import free_port, gateway_env

ADMIN_KEY = "adm-key-123"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}

CONFIG = """
server: {{admin_key: adm-key-123}}
backends:
  mock:
    type: mock
    mock: {{ttft_ms: 0, tokens: 5}}
models:
  mock-gpt: {{targets: [{{backend: mock}}]}}
telemetry:
  {dsn}
  flush_interval_ms: {flush_ms}
  retry_initial_ms: 100
  retry_max_ms: 500
{telemetry}"""


def write_config(tmp_path: Path, dsn: str | None = None, name: str = "gateway.yaml", telemetry: str = "",
                 flush_ms: int = 100) -> Path:
    """A config with the mock model ``mock-gpt``; ``dsn``: a ClickHouse server (or ``chdb://DIR``;
    default: the embedded store); ``telemetry``: more keys of the ``telemetry:`` section, indented by two."""
    path = tmp_path / name
    path.write_text(CONFIG.format(dsn=f'clickhouse: {{dsn: "{dsn}"}}' if dsn else "enabled: true",
                                  telemetry=telemetry, flush_ms=flush_ms))
    return path


class Gateway:
    """``llm-gateway serve`` in a subprocess on its own data folder."""

    def __init__(self, config: Path, data_dir: Path, log: Path, *, workers: int = 1, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log = log
        out = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port",
                                      str(self.port), "--workers", str(workers), "--data-dir", str(data_dir)],
                                     stdout=out, stderr=subprocess.STDOUT, env=gateway_env(), cwd=str(config.parent))
        out.close()
        wait_for(self._ready, timeout=90, what=f"the gateway on {self.port} to be ready")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def readyz(self) -> tuple[int, dict[str, Any]]:
        r = httpx.get(f"{self.url}/readyz", timeout=10)
        return r.status_code, r.json()

    def stats(self) -> dict[str, Any]:
        """``GET /admin/telemetry``: this serving process's log counters and the ingester's."""
        r = httpx.get(f"{self.url}/admin/telemetry", headers=ADMIN, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def ingester(self) -> psutil.Process:
        """The supervised ingester process (a child running ``gateway ingest``)."""
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if "ingest" in child.cmdline():
                    return child
            except psutil.NoSuchProcess:
                continue
        raise AssertionError("no ingester process")

    def ingester_alive(self) -> bool:
        try:
            return self.ingester().is_running()
        except AssertionError:
            return False

    def rows(self, prefix: str) -> dict[str, int]:
        """``client_request_id → rows`` for the requests of one load (through the running gateway)."""
        r = httpx.post(f"{self.url}/admin/query", headers=ADMIN, timeout=30, json={
            "sql": "SELECT client_request_id AS id, count() AS n FROM llm_requests "
                   "WHERE startsWith(client_request_id, {p:String}) GROUP BY id",
            "params": {"p": prefix + "-"}, "format": "jsonl"})
        assert r.status_code == 200, r.text
        return {row["id"]: int(row["n"]) for row in map(_json, r.text.splitlines()) if row}

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


def _json(line: str) -> dict:
    return orjson.loads(line) if line.strip() else {}


def assert_exactly_once(gw: Gateway, load: Load) -> dict[str, int]:
    """Every answered request of ``load`` has exactly one row (polled while the ingester catches
    up), and no request of the load has two. Returns the rows."""
    return assert_rows_once(gw, load.prefix, set(load.answered))


def assert_rows_once(gw: Gateway, prefix: str, answered: set[str]) -> dict[str, int]:
    """Every id of ``answered`` has exactly one row, polled while the ingester catches up; no
    request whose id starts with ``prefix-`` has two. Returns ``id → rows`` for the prefix."""
    assert answered, "the load got no answer at all"

    def caught_up() -> bool:
        try:
            rows = gw.rows(prefix)
        except (AssertionError, httpx.HTTPError):  # the store is not served yet (its ingester is restarting)
            return False
        return answered <= rows.keys()

    wait_for(caught_up, timeout=120, what=f"rows of all {len(answered)} answered requests")
    rows = gw.rows(prefix)
    duplicated = {k: n for k, n in rows.items() if n != 1}
    assert not duplicated, f"{len(duplicated)} requests have more than one row: {list(duplicated.items())[:5]}"
    return rows


def kill_9_the_serving_process_under_load(tmp_path: Path, config: Path) -> None:
    """``kill -9`` of ``serve`` after 300 answered requests, then a restart on the same data
    folder: every answered request has exactly one row."""
    data = tmp_path / "data"
    gw = Gateway(config, data, tmp_path / "gw1.log")
    load = Load([gw.url], threads=4)
    try:
        with load:
            wait_for(lambda: load.count >= 300, timeout=120, what="300 answered requests")
            gw.kill()  # the ingester sees its parent gone and exits by itself
        wait_for(lambda: not [p for p in psutil.process_iter(["cmdline"])
                              if str(data) in " ".join(p.info["cmdline"] or ())],
                 timeout=30, what="the orphaned ingester to exit")
    finally:
        gw.stop()
    gw2 = Gateway(config, data, tmp_path / "gw2.log")
    try:
        assert_exactly_once(gw2, load)
    finally:
        gw2.stop()


def kill_9_the_ingester_under_load(tmp_path: Path, config: Path) -> None:
    """``kill -9`` of the supervised ingester three times under load (each time while it
    inserts): ``serve`` restarts it, and every answered request has exactly one row."""
    gw = Gateway(config, tmp_path / "data", tmp_path / "gw.log")
    try:
        with Load([gw.url], threads=4) as load:
            for goal in (150, 300, 450):
                wait_for(lambda: load.count >= goal, timeout=120, what=f"{goal} answered requests")  # noqa: B023
                gw.ingester().kill()
                wait_for(gw.ingester_alive, timeout=60, what="the supervisor to restart the ingester")
        assert_exactly_once(gw, load)
    finally:
        gw.stop()
