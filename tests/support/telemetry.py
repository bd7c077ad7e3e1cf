"""Helpers and fixtures for the telemetry tests.

chDB hosts one data directory per process for as long as any client holds it, so every
in-process chDB user of the test session (the gateways' sinks, the HTTP stand-in, direct
clients) shares ``CHDB_DIR``; tests isolate themselves with a database of their own.
Gateways started as subprocesses get directories of their own.

Importing this module sets ``TZ=UTC`` (chDB returns ``DateTime64`` values naive in the host's
zone).
``isolate_telemetry_data`` (session, autouse where imported) points ``LLM_GATEWAY_DATA_DIR`` at
a temporary folder so no test writes into the working directory's ``./.llm-gateway``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.support.polling import wait_for  # noqa: F401 - the suite's one poll helper, used with these

REPO = Path(__file__).resolve().parents[2]
os.environ["TZ"] = "UTC"
time.tzset()

SESSION_DIR = Path(tempfile.mkdtemp(prefix="llm-gateway-tests-"))
CHDB_DIR = SESSION_DIR / "clickhouse"
atexit.register(shutil.rmtree, SESSION_DIR, True)


@pytest.fixture(scope="session", autouse=True)
def isolate_telemetry_data():
    """Embedded telemetry of every gateway built in this session lives under a temp folder."""
    old = os.environ.get("LLM_GATEWAY_DATA_DIR")
    os.environ["LLM_GATEWAY_DATA_DIR"] = str(SESSION_DIR)  # its clickhouse/ is CHDB_DIR: one engine dir
    yield
    if old is None:
        os.environ.pop("LLM_GATEWAY_DATA_DIR", None)
    else:
        os.environ["LLM_GATEWAY_DATA_DIR"] = old


@pytest.fixture
def tdb() -> str:
    """A fresh database name for one test."""
    return "t_" + uuid.uuid4().hex[:12]


def chdb_dsn() -> str:
    """The session's shared chDB DSN."""
    return f"chdb://{CHDB_DIR}"


def chdb_client(database: str | None = None):
    """A clickhouse-connect client on the session's chDB directory (close it when done)."""
    import clickhouse_connect

    CHDB_DIR.mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=chdb_dsn(), database=database)


def select_rows(database: str, sql: str) -> list[dict]:
    """The rows of ``sql`` on the session's chDB, in ``database``, as dicts (JSONEachRow)."""
    import orjson

    client = chdb_client(database)
    try:
        data = client.raw_query(sql, fmt="JSONEachRow")
    finally:
        client.close()
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


def telemetry_yaml(dsn: str, database: str, log_dir: Path | str, *, batch_rows: int = 1000,
                   flush_interval_ms: int = 100, retry_initial_ms: int = 100, retry_max_ms: int = 1000,
                   extra: str = "") -> str:
    """A ``telemetry:`` YAML section; ``log_dir``: the test's own request log folder."""
    return f"""
telemetry:
  clickhouse:
    dsn: "{dsn}"
    database: {database}
  log: {{dir: "{log_dir}"}}
  batch_rows: {batch_rows}
  flush_interval_ms: {flush_interval_ms}
  retry_initial_ms: {retry_initial_ms}
  retry_max_ms: {retry_max_ms}
{extra}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gateway_env(**extra: str) -> dict[str, str]:
    """Environment for a gateway subprocess (repo importable, UTC)."""
    env = dict(os.environ)
    env.pop("LLM_GATEWAY_TELEMETRY", None)
    env.update({"TZ": "UTC", "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
                "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def spawn_gateway(config_path: Path, port: int, log_path: Path, **env: str) -> subprocess.Popen:
    """``llm-gateway serve`` in a subprocess; returns once ``/readyz`` answers 200."""
    import httpx

    log = open(log_path, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config_path),
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env=gateway_env(**env), cwd=str(config_path.parent))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"gateway did not become ready:\n{log_path.read_text()[-3000:]}")
