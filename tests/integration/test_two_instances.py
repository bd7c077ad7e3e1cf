"""Two gateway instances (two ``llm-gateway serve`` processes on their own ports and data
folders, standing in for two hosts) sharing one Redis and one ClickHouse server (the HTTP
stand-in): a key's rate limit holds across both, an answer cached through one is a hit through
the other, a circuit opened by one is open on the other, and every request either answered has
exactly one row in the shared store (each instance's own ingester inserts its own log).

Redis is the shared server on 127.0.0.1:6379, in a database of its own (``REDIS_DB``); every key
this test writes carries this run's id, and they are deleted at the end.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway_process import ADMIN, Gateway, assert_rows_once
from tests.support.load import Load
from tests.support.polling import wait_for
from tests.support.routing import OK
from tests.support.standin import standin  # noqa: F401
from tests.support.telemetry import isolate_telemetry_data, tdb  # noqa: F401

REDIS_DB = 13
RPM = 4
LIMITED_KEY = "sk-two-instances-limited-key"
LOAD_KEY = "sk-two-instances-load-key"


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
def shared_redis():
    """(url, run id) on the shared Redis; this run's keys are deleted afterwards."""
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis on 127.0.0.1:6379: {exc}")
    run = uuid.uuid4().hex[:10]
    yield f"redis://127.0.0.1:6379/{REDIS_DB}", run
    for key in client.scan_iter(match=f"*{run}*", count=1000):
        client.delete(key)
    assert not list(client.scan_iter(match=f"*{run}*")), "keys of this run left behind"
    client.close()


def config(tmp_path: Path, redis_url: str, run: str, dsn: str, upstream: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"""
server: {{admin_key: adm-key-123}}
keys:
  - {{tenant: team, sha256: {_sha(LIMITED_KEY)}, id: limited, rpm: {RPM}}}
  - {{tenant: team, sha256: {_sha(LOAD_KEY)}, id: load}}
limits: {{redis_url: "{redis_url}", key_prefix: "lim-{run}"}}
cache: {{store: redis, redis_url: "{redis_url}", namespace: "ns-{run}"}}
backends:
  mock: {{type: mock, mock: {{ttft_ms: 0, tokens: 5}}}}
  flaky-{run}: {{type: openai, base_url: "{upstream}", api_key: sk-upstream}}
models:
  mock-gpt: {{targets: [{{backend: mock}}]}}
  cached: {{targets: [{{backend: mock}}], cache: {{enabled: true, mode: always}}}}
  guarded:
    strategy: priority
    targets: [{{backend: flaky-{run}, model: up-model}}, {{backend: mock, model: mock-model}}]
routing:
  redis_url: "{redis_url}"
  retry: {{attempts: 1}}
  circuit_breaker: {{consecutive_failures: 2, cooldown_s: 300}}
telemetry:
  clickhouse: {{dsn: "{dsn}"}}
  flush_interval_ms: 100
  retry_initial_ms: 100
  retry_max_ms: 500
""")
    return path


class Client:
    """Requests with ids under one prefix, remembering every id that got an answer."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.answered: set[str] = set()
        self._n = 0
        self._http = httpx.Client(timeout=30)

    def chat(self, gw: Gateway, key: str, model: str = "mock-gpt", content: str = "hi") -> httpx.Response:
        rid = f"{self.prefix}-d{self._n}"
        self._n += 1
        r = self._http.post(f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}",
                                                                      "x-request-id": rid},
                            json={"model": model, "messages": [{"role": "user", "content": content}]})
        self.answered.add(rid)
        return r


def circuit(gw: Gateway, target: str) -> str | None:
    body = httpx.get(f"{gw.url}/admin/backends", headers=ADMIN, timeout=10).json()
    return next((t["circuit"] for t in body["targets"] if t["target"] == target), None)


def test_two_instances_share_limits_cache_circuits_and_rows(tmp_path, shared_redis, standin, tdb):
    redis_url, run = shared_redis
    with FakeUpstream() as flaky:
        flaky.json(OK)
        cfg = config(tmp_path, redis_url, run, standin.dsn(tdb), flaky.url)
        a = Gateway(cfg, tmp_path / "a", tmp_path / "a.log")
        try:
            b = Gateway(cfg, tmp_path / "b", tmp_path / "b.log")
        except BaseException:
            a.stop()
            raise
        prefix = uuid.uuid4().hex[:8]
        client = Client(prefix)
        try:
            # Rate limit: RPM requests a minute for the key, counted across both instances.
            codes = [client.chat(gw, LIMITED_KEY).status_code for gw in (a, b) * (RPM + 2)]
            assert sorted(codes) == [200] * RPM + [429] * (RPM + 4), codes
            assert codes[:RPM] == [200] * RPM  # A and B each answered some, then both refused

            # Cache: answered through A (a miss, stored in Redis), then a hit through B.
            first = client.chat(a, LOAD_KEY, "cached", f"cache me {run}")
            assert first.status_code == 200 and first.headers["x-gateway-cache"] == "miss"
            with redis.Redis.from_url(redis_url) as r:
                wait_for(lambda: list(r.scan_iter(match=f"llm-gateway:cache:ns-{run}:*")), what="the entry in Redis")
            second = client.chat(b, LOAD_KEY, "cached", f"cache me {run}")
            assert second.status_code == 200 and second.headers["x-gateway-cache"] == "hit"
            assert second.json()["choices"] == first.json()["choices"]

            # Circuits: the flaky backend fails through A until A opens its circuit; B sees it open.
            target = f"flaky-{run}/up-model"
            assert client.chat(b, LOAD_KEY, "guarded").headers["x-gateway-backend"] == f"flaky-{run}"  # B knows it
            flaky.json({"error": {"message": "down"}}, status=500)
            for _ in range(2):
                r = client.chat(a, LOAD_KEY, "guarded")
                assert r.status_code == 200 and r.headers["x-gateway-backend"] == "mock"  # fell back
            assert circuit(a, target) == "open"
            wait_for(lambda: circuit(b, target) == "open", timeout=30, what="B to see the circuit A opened")
            sent = len(flaky.received)
            flaky.json(OK)
            r = client.chat(b, LOAD_KEY, "guarded")
            assert r.status_code == 200 and r.headers["x-gateway-backend"] == "mock"
            assert len(flaky.received) == sent  # B did not try the open target

            # Rows: load through both, then every request either instance answered has one row.
            load = Load([a.url, b.url], threads=4, prefix=f"{prefix}-load", headers={"Authorization": f"Bearer {LOAD_KEY}"})
            with load:
                wait_for(lambda: load.count >= 300, timeout=120, what="300 answered requests")
            assert load.failed == 0 and load.refused == 0, load.statuses
            rows = assert_rows_once(a, prefix, client.answered | set(load.answered))
            assert len(rows) == len(client.answered) + load.count  # and no row for a request not sent
            for gw in (a, b):  # each instance's ingester inserted its own log
                assert gw.stats()["ingester"]["rows"] > 0
        finally:
            b.stop()
            a.stop()
