"""Telemetry across process lifetimes: records logged while the store is down survive a
``kill -9`` and arrive after a restart, SIGTERM drains the log into the store, and the ``llm-gateway query`` / ``db migrate`` commands (through a running
gateway, and on the embedded directory when none runs). Gateways run as real subprocesses
(``llm-gateway serve``) with chDB directories of their own."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import httpx
import openai
import pytest

from tests.support.gateway_process import write_config
from tests.support.telemetry import free_port, gateway_env, isolate_telemetry_data, spawn_gateway, wait_for  # noqa: F401

ADMIN = {"Authorization": "Bearer adm-key-123"}


def cli(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", "--log-level", "WARNING", *args], capture_output=True,
                          text=True, timeout=timeout, env=gateway_env(**env))


def stats(port: int) -> dict:
    return httpx.get(f"http://127.0.0.1:{port}/admin/telemetry", headers=ADMIN, timeout=5).json()


def send(port: int, n: int, prefix: str) -> list[str]:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-x", max_retries=0)
    ids = []
    for i in range(n):
        rid = f"{prefix}-{i}"
        client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": f"hi {i}"}],
                                       extra_headers={"x-request-id": rid})
        ids.append(rid)
    client.close()
    return ids


def test_kill_9_while_the_store_is_down_then_restart_ingests_and_sigterm_drains(tmp_path):
    log_dir = tmp_path / "log"
    store = tmp_path / "store"
    log = f'  log: {{dir: "{log_dir}"}}'
    down = write_config(tmp_path, f"http://127.0.0.1:{free_port()}/db", "down.yaml", log, flush_ms=50)
    up = write_config(tmp_path, f"chdb://{store}", "up.yaml", log, flush_ms=60_000)

    # 1. the store is unreachable: records wait in the log; then the gateway dies without any cleanup
    port = free_port()
    proc = spawn_gateway(down, port, tmp_path / "gw1.log")
    try:
        ids = send(port, 40, "killed")
        assert stats(port)["written"] == 40 and stats(port)["lost"] == 0
        wait_for(lambda: (stats(port)["ingester"] or {}).get("store") == "down", what="the ingester to find the store down")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert list(log_dir.glob("*/*.seg"))

    # 2. restart with a working store: the dead process's records are ingested at start-up
    port = free_port()
    proc = spawn_gateway(up, port, tmp_path / "gw2.log")
    try:
        def rows() -> dict | None:  # None until the ingester serves the store it opened
            out = cli("query", "--config", str(up), "--url", f"http://127.0.0.1:{port}", "--format", "jsonl",
                      "SELECT count() AS n, uniqExact(request_id) AS u FROM llm_requests")
            return json.loads(out.stdout) if out.returncode == 0 else None

        # queried through the running gateway (the ingester owns the embedded directory)
        wait_for(lambda: rows() == {"n": 40, "u": 40}, what="the 40 logged records in the store")
        # a saved query, the admin key from the environment
        out = cli("query", "--config", str(up), "--url", f"http://127.0.0.1:{port}", "--saved", "slowest-requests",
                  "-p", "limit=3", "--format", "csv", GATEWAY_ADMIN_KEY="adm-key-123")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[0].startswith('"ts_start","request_id","model"') and len(out.stdout.splitlines()) == 4
        bad = cli("query", "--config", str(up), "--url", f"http://127.0.0.1:{port}", "--admin-key", "wrong", "SELECT 1")
        assert bad.returncode != 0 and "401" in bad.stderr
        # the directory is held by the gateway: a direct open is refused with a pointer to --url
        held = cli("query", "--dsn", f"chdb://{store}", "SELECT 1")
        assert held.returncode != 0 and "--url" in held.stderr
        # 3. more requests; the ingester looks for records once a minute, so SIGTERM must drain them
        ids += send(port, 10, "sigterm")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0, (tmp_path / "gw2.log").read_text()[-2000:]

    # 4. no gateway runs: the CLI opens the directory itself
    out = cli("query", "--dsn", f"chdb://{store}", "--format", "jsonl",
              "SELECT client_request_id AS id FROM llm_requests ORDER BY id")
    assert out.returncode == 0, out.stderr
    assert sorted(json.loads(line)["id"] for line in out.stdout.splitlines()) == sorted(ids)
    assert not list(log_dir.glob("*/*.seg"))  # everything ingested was deleted from the log


def test_db_migrate_and_print_ddl(tmp_path):
    dsn = f"chdb://{tmp_path / 'store'}"
    first = cli("db", "migrate", "--dsn", dsn)
    assert first.returncode == 0, first.stderr
    assert "applied migration(s) 1, 2" in first.stdout
    again = cli("db", "migrate", "--dsn", dsn)
    assert again.returncode == 0 and "schema is up to date" in again.stdout
    cfg = tmp_path / "c.yaml"
    cfg.write_text("telemetry:\n  clickhouse: {cluster: prod, ttl_days: 7, database: logs}\n")
    ddl = cli("db", "migrate", "--config", str(cfg), "--print-ddl")
    assert ddl.returncode == 0 and "ON CLUSTER `prod`" in ddl.stdout and "Distributed(`prod`, `logs`" in ddl.stdout
    listed = cli("query", "--list")
    assert listed.returncode == 0 and "latency-by-model" in listed.stdout


@pytest.mark.parametrize("rejected", ["DROP TABLE llm_requests", "SELECT 1 INTO OUTFILE '/tmp/x'"])
def test_cli_rejects_writes_before_sending(rejected):
    out = cli("query", rejected)
    assert out.returncode == 2 and "allowed" in out.stderr
