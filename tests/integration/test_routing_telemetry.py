"""Routing provenance in ClickHouse: rule, strategy, candidates, attempts, and config hashes."""

from __future__ import annotations

import httpx
import orjson

from tests.support.gateway import serve
from tests.support.polling import wait_for
from tests.support.routing import MSG, OK, two_target_config, two_upstreams  # noqa: F401
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml  # noqa: F401
from tests.support.telemetry_rows import flush, select


def test_rows_and_attempts_carry_provenance_and_both_config_hashes(two_upstreams, tdb, tmp_path):
    a, b = two_upstreams
    path = tmp_path / "gateway.yaml"
    base = (two_target_config(a.url, b.url).replace("routing:\n", "routes:\n  - {name: all-m, match: {model: m}, "
                                                                  "strategy: priority}\nrouting:\n")
            + "server: {reload_interval_s: 0.05}\n" + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool"))
    path.write_text(base)
    a.json({"error": {"message": "overloaded"}}, status=503)
    b.json(OK)
    with serve(path=path) as gw:
        first_hash = httpx.get(f"{gw.url}/readyz").json()["config_hash"]
        r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "m", "messages": MSG},
                       headers={"x-request-id": "fallback-1"})
        assert r.status_code == 200 and r.headers["x-gateway-attempts"] == "3"
        path.write_text(base.replace("strategy: priority}", "strategy: least-busy}"))
        wait_for(lambda: httpx.get(f"{gw.url}/readyz").json()["config_hash"] != first_hash, what="the reload")
        second_hash = httpx.get(f"{gw.url}/readyz").json()["config_hash"]
        assert second_hash != first_hash
        httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "m", "messages": MSG},
                   headers={"x-request-id": "after-reload"})
        flush(gw)
    rows = {r["client_request_id"]: r for r in select(
        tdb, "SELECT client_request_id, config_hash, route_rule, strategy, route_candidates, attempts, backend, "
             "toString(request_id) AS rid FROM llm_requests")}
    first = rows["fallback-1"]
    assert first["config_hash"] == first_hash and rows["after-reload"]["config_hash"] == second_hash
    assert first["route_rule"] == "all-m" and first["strategy"] == "priority" and first["attempts"] == 3
    assert rows["after-reload"]["strategy"] == "least-busy"
    candidates = orjson.loads(first["route_candidates"])
    assert [c["target"] for c in candidates] == ["up-a/model-a", "up-b/model-b"]
    assert all(set(c) == {"target", "score", "skipped"} for c in candidates)
    attempts = select(tdb, f"SELECT attempt, backend, status_code, error_type, backoff_ms, latency_ms "
                           f"FROM llm_attempts WHERE request_id = '{first['rid']}' ORDER BY attempt")
    assert [(x["backend"], x["status_code"], x["error_type"]) for x in attempts] == [
        ("up-a", 503, "5xx"), ("up-a", 503, "5xx"), ("up-b", 200, "")]
    assert attempts[0]["backoff_ms"] == 0 and attempts[1]["backoff_ms"] > 0
