"""Rows survive process kills: ``kill -9`` of the serving process or of the ingester under load
loses no answered request and duplicates none, with the embedded store and with a ClickHouse
server (the HTTP stand-in); ``--workers 2`` on the embedded store writes every row once.

Real processes (``llm-gateway serve``), real signals, real chDB. A request counts as answered
when its whole response reached the client; every answered request must have exactly one row.
Requests in flight at the kill may have a row or not (their client saw an error).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from tests.support.load import Load
from tests.support.polling import wait_for
from tests.support.telemetry import free_port, gateway_env, isolate_telemetry_data  # noqa: F401

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
  flush_interval_ms: 100
  retry_initial_ms: 100
  retry_max_ms: 500
"""
ADMIN = {"Authorization": "Bearer adm-key-123"}


def write_config(tmp_path: Path, dsn: str | None = None, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(CONFIG.format(dsn=f'clickhouse: {{dsn: "{dsn}"}}' if dsn else "enabled: true"))
    return path


class Gateway:
    """``llm-gateway serve`` in a subprocess on its own data folder."""

    def __init__(self, config: Path, data_dir: Path, log: Path, *, workers: int = 1, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        out = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port",
                                      str(self.port), "--workers", str(workers), "--data-dir", str(data_dir)],
                                     stdout=out, stderr=subprocess.STDOUT, env=gateway_env(), cwd=str(config.parent))
        wait_for(self._ready, timeout=90, what=f"the gateway on {self.port} to be ready")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def ingester(self) -> psutil.Process:
        """The supervised ingester process (a child running ``gateway ingest``)."""
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if "ingest" in child.cmdline():
                    return child
            except psutil.NoSuchProcess:
                continue
        raise AssertionError("no ingester process")

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
    import orjson

    return orjson.loads(line) if line.strip() else {}


def assert_exactly_once(gw: Gateway, load: Load) -> None:
    """Every answered request of ``load`` has exactly one row (polled while the ingester catches up)."""
    answered = set(load.answered)
    assert answered, "the load got no answer at all"

    def caught_up() -> bool:
        try:
            rows = gw.rows(load.prefix)
        except AssertionError:  # the store is not served yet (its ingester is restarting)
            return False
        return answered <= rows.keys()

    wait_for(caught_up, timeout=120, what=f"rows of all {len(answered)} answered requests")
    rows = gw.rows(load.prefix)
    duplicated = {k: n for k, n in rows.items() if n != 1}
    assert not duplicated, f"{len(duplicated)} requests have more than one row: {list(duplicated.items())[:5]}"


def test_kill_9_of_the_serving_process_under_load_loses_and_duplicates_nothing(tmp_path):
    config = write_config(tmp_path)
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


def test_kill_9_of_the_ingester_under_load_loses_and_duplicates_nothing(tmp_path):
    gw = Gateway(write_config(tmp_path), tmp_path / "data", tmp_path / "gw.log")
    try:
        with Load([gw.url], threads=4) as load:
            for goal in (150, 300, 450):  # kill it several times, each while it inserts
                wait_for(lambda: load.count >= goal, timeout=120, what=f"{goal} answered requests")  # noqa: B023
                gw.ingester().kill()
                wait_for(lambda: _ingester_alive(gw), timeout=60, what="the supervisor to restart the ingester")
        assert_exactly_once(gw, load)
    finally:
        gw.stop()


def _ingester_alive(gw: Gateway) -> bool:
    try:
        return gw.ingester().is_running()
    except AssertionError:
        return False


def test_workers_2_with_the_embedded_store_write_every_row_once(tmp_path):
    gw = Gateway(write_config(tmp_path), tmp_path / "data", tmp_path / "gw.log", workers=2)
    try:
        with Load([gw.url], threads=4) as load:
            wait_for(lambda: load.count >= 400, timeout=120, what="400 answered requests")
        assert_exactly_once(gw, load)
        writers = [p for p in (tmp_path / "data" / "log").iterdir() if not p.name.startswith(".")]
        assert len(writers) >= 2, "both workers wrote a log of their own"
    finally:
        gw.stop()
