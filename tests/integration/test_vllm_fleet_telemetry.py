"""vLLM fleets in ClickHouse: each request's row records ``strategy = 'vllm-load'`` and, in
``route_candidates``, every candidate's score with the load snapshot it was computed from (and
the affinity decision), readable with ClickHouse's JSON functions."""

from __future__ import annotations

import httpx
import orjson

from tests.support.fake_upstream import FakeVllm
from tests.support.gateway import serve
from tests.support.polling import wait_for
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml  # noqa: F401
from tests.support.telemetry_rows import flush, select
from tests.support.vllm_fleet import MSG, fleet_config, scraped


def test_rows_carry_the_snapshots_and_scores(tdb, tmp_path):
    with FakeVllm("vllm-a") as a, FakeVllm("vllm-b") as b:
        a.waiting, a.running, a.kv_cache = 4, 2, 0.5
        path = tmp_path / "gateway.yaml"
        text = fleet_config(a, b, extra="  vllm_load: {prefix_affinity: true}\n").replace(
            "telemetry: {enabled: false}\n", "") + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool")
        path.write_text(text)
        with serve(path=path) as gw:
            wait_for(lambda: scraped(gw, "va", waiting=4.0) and scraped(gw, "vb"), what="first scrapes")
            for i in range(3):
                r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "tiny", "messages": MSG},
                               headers={"x-request-id": f"fleet-{i}"})
                assert r.status_code == 200 and r.headers["x-gateway-backend"] == "vb"
            flush(gw)
    rows = select(tdb, "SELECT client_request_id, backend, strategy, route_candidates FROM llm_requests "
                       "ORDER BY client_request_id")
    assert [r["client_request_id"] for r in rows] == ["fleet-0", "fleet-1", "fleet-2"]
    row = rows[0]
    assert row["backend"] == "vb" and row["strategy"] == "vllm-load"
    candidates = {c["target"]: c for c in orjson.loads(row["route_candidates"])}
    assert candidates["va/tiny-llama"]["load"] == {"waiting": 4.0, "running": 2.0, "kv_cache": 0.5, "inflight": 0,
                                                   "age_ms": candidates["va/tiny-llama"]["load"]["age_ms"]}
    assert candidates["va/tiny-llama"]["score"] == 4 + 0.5 + 1.0
    assert candidates["vb/tiny-llama"]["load"]["waiting"] == 0.0
    assert any(c.get("affinity") in ("preferred", "overloaded") for c in candidates.values())
    # The same, in SQL (docs/vllm.md).
    flat = select(tdb, """
        SELECT JSONExtractString(c, 'target') AS target, JSONExtractFloat(c, 'score') AS score,
               JSONExtractFloat(c, 'load', 'waiting') AS waiting, JSONExtractFloat(c, 'load', 'kv_cache') AS kv
        FROM llm_requests ARRAY JOIN JSONExtractArrayRaw(route_candidates) AS c
        WHERE client_request_id = 'fleet-0' ORDER BY target""")
    assert flat == [{"target": "va/tiny-llama", "score": 5.5, "waiting": 4, "kv": 0.5},
                    {"target": "vb/tiny-llama", "score": 0, "waiting": 0, "kv": 0}]
