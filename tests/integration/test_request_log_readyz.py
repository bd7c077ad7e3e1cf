"""``/readyz`` tells when telemetry lags: records that wait for the ingester longer than
``telemetry.log.lag_degraded_s`` (the store is down) make it answer degraded — still 200, the
gateway serves — and it is ready again by itself once the store is back and they are in."""

from __future__ import annotations

import httpx

from loadtest.clickhouse_standin import ClickHouseHTTPStandIn
from tests.support.gateway import serve
from tests.support.polling import wait_for
from tests.support.telemetry import CHDB_DIR, isolate_telemetry_data, tdb  # noqa: F401

CONFIG = """
backends:
  mock: {{type: mock, mock: {{ttft_ms: 0, tokens: 3}}}}
models:
  mock-gpt: {{targets: [{{backend: mock}}]}}
telemetry:
  clickhouse: {{dsn: "{dsn}"}}
  flush_interval_ms: 50
  retry_initial_ms: 50
  retry_max_ms: 200
  log: {{dir: "{log}", lag_degraded_s: 0.5}}
"""


def readyz(url: str) -> tuple[int, str, str]:
    r = httpx.get(f"{url}/readyz", timeout=5)
    body = r.json()
    return r.status_code, body["status"], body.get("reason", "")


def test_readyz_is_degraded_while_records_wait_and_ready_once_ingested(tmp_path, tdb):
    CHDB_DIR.mkdir(parents=True, exist_ok=True)
    with ClickHouseHTTPStandIn(str(CHDB_DIR)) as store:
        with serve(CONFIG.format(dsn=store.dsn(tdb), log=tmp_path / "log")) as gw:
            assert readyz(gw.url)[:2] == (200, "ready")
            store.stop()  # connection refused from now on
            r = httpx.post(f"{gw.url}/v1/chat/completions",
                           json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200
            wait_for(lambda: readyz(gw.url)[:2] == (200, "degraded") and "behind" in readyz(gw.url)[2],
                     timeout=30, what="/readyz to say the ingester is behind")
            store.start()  # same port
            wait_for(lambda: readyz(gw.url)[:2] == (200, "ready"), timeout=60, what="/readyz ready again")
            assert httpx.get(f"{gw.url}/admin/telemetry").json()["ingested"]
