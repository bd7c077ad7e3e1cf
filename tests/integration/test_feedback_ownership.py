"""Tenants cannot write into each other's records: ``POST /v1/feedback`` scores only a request
that exists and belongs to the caller's tenant (the admin key may score any), both while the
gateway remembers the request and, for older ones, from ClickHouse; and the row's
``request_id`` is always the gateway's own, the client's ``x-request-id`` being echoed and kept
as ``client_request_id``. Real gateway, real HTTP (the OpenAI SDK for requests), real chDB."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import openai
import pytest

from gateway.proxy.server import BackgroundServer
from gateway.telemetry import SINK
from tests.support.gateway import serve
from tests.support.telemetry import chdb_client, chdb_dsn, isolate_telemetry_data, select_rows, tdb, telemetry_yaml  # noqa: F401

KEY_A, KEY_B, ADMIN = "sk-gw-tenant-a-key-1", "sk-gw-tenant-b-key-1", "adm-feedback-1"


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


CONFIG = f"""
server: {{admin_key: {ADMIN}}}
backends:
  mock: {{type: mock}}
models:
  mock-gpt: {{targets: [{{backend: mock}}]}}
keys:
  - {{tenant: team-a, id: app-a, sha256: {_sha(KEY_A)}}}
  - {{tenant: team-b, id: app-b, sha256: {_sha(KEY_B)}}}
"""




@pytest.fixture
def start(tmp_path, tdb):
    started = []

    def run() -> BackgroundServer:
        text = CONFIG + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool", flush_interval_ms=50)
        srv = serve(text)
        srv.__enter__()
        started.append(srv)
        return srv

    yield run
    for srv in started:
        if not srv.loop.is_closed():  # (a test may have stopped it already)
            srv.__exit__(None, None, None)


def ask(srv, key: str, **headers) -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=[{"role": "user", "content": "hi"}], extra_headers=headers)
    raw.parse()
    return raw


def score(srv, key: str, rid: str, value: float = 1.0) -> httpx.Response:
    return httpx.post(f"{srv.url}/v1/feedback", json={"request_id": rid, "score": value},
                      headers={"Authorization": f"Bearer {key}"}, timeout=30)


def flush(srv) -> None:
    assert httpx.post(f"{srv.url}/admin/telemetry/flush", headers={"Authorization": f"Bearer {ADMIN}"},
                      timeout=30).json()["flushed"]
    assert srv.app[SINK].flush(20)


def not_found(r: httpx.Response) -> bool:
    return r.status_code == 404 and r.json()["error"]["code"] == "request_not_found" \
        and r.json()["error"]["param"] == "request_id"


def test_feedback_scores_only_the_callers_own_requests(start, tdb):
    srv = start()
    rid_a = ask(srv, KEY_A).headers["x-request-id"]
    rid_b = ask(srv, KEY_B).headers["x-request-id"]
    # Just answered: known from memory, before any row reached ClickHouse.
    assert not_found(score(srv, KEY_B, rid_a))  # tenant B scoring tenant A's request
    assert not_found(score(srv, KEY_B, str(uuid.uuid4())))  # a made-up id
    assert not_found(score(srv, KEY_B, "made-up-id"))
    own = score(srv, KEY_A, rid_a, 0.5)
    assert own.status_code == 200 and own.json()["request_id"] == rid_a
    assert score(srv, ADMIN, rid_b, 0.25).status_code == 200  # the admin key may score any
    assert httpx.post(f"{srv.url}/v1/feedback", json={"request_id": rid_a, "score": 1}).status_code == 401
    flush(srv)

    # A gateway started afresh knows nothing in memory: it looks the request up in ClickHouse.
    srv.__exit__(None, None, None)
    fresh = start()
    assert not_found(score(fresh, KEY_A, rid_b))
    assert not_found(score(fresh, KEY_A, str(uuid.uuid4())))
    assert score(fresh, KEY_B, rid_b, 1.0).status_code == 200
    assert score(fresh, ADMIN, rid_a, 0.75).status_code == 200
    flush(fresh)

    rows = select_rows(tdb, """
        SELECT toString(f.request_id) AS rid, f.tenant AS by_tenant, f.api_key_id AS by_key, f.score AS score,
               r.tenant AS owner
        FROM llm_feedback AS f INNER JOIN llm_requests AS r ON r.request_id = f.request_id
        ORDER BY f.ts""")
    assert [(r["rid"], r["by_tenant"], r["by_key"], r["score"], r["owner"]) for r in rows] == [
        (rid_a, "team-a", "app-a", 0.5, "team-a"),
        (rid_b, "", "admin", 0.25, "team-b"),
        (rid_b, "team-b", "app-b", 1.0, "team-b"),
        (rid_a, "", "admin", 0.75, "team-a"),
    ]
    # Nothing else was stored: no score for a made-up or foreign id.
    assert select_rows(tdb, "SELECT count() AS n FROM llm_feedback") == [{"n": 4}]


def test_two_tenants_sending_the_same_x_request_id_get_rows_of_their_own(start, tdb):
    srv = start()
    a = ask(srv, KEY_A, **{"x-request-id": "same-id-1"})
    b = ask(srv, KEY_B, **{"x-request-id": "same-id-1"})
    assert a.headers["x-request-id"] == b.headers["x-request-id"] == "same-id-1"  # echoed as sent
    # Each tenant's own id names its own request.
    assert score(srv, KEY_A, "same-id-1", 0.1).status_code == 200
    assert score(srv, KEY_B, "same-id-1", 0.9).status_code == 200
    # A client's UUID is its own id too, never the row's.
    mine = str(uuid.uuid4())
    assert ask(srv, KEY_A, **{"x-request-id": mine}).headers["x-request-id"] == mine
    flush(srv)
    rows = select_rows(tdb, "SELECT toString(request_id) AS rid, client_request_id AS cid, tenant FROM llm_requests "
                       "ORDER BY ts_start")
    assert [(r["cid"], r["tenant"]) for r in rows] == [("same-id-1", "team-a"), ("same-id-1", "team-b"),
                                                       (mine, "team-a")]
    ids = [r["rid"] for r in rows]
    assert len(set(ids)) == 3 and mine not in ids and all(uuid.UUID(i).version == 4 for i in ids)
    scored = select_rows(tdb, "SELECT r.tenant AS owner, f.tenant AS by_tenant, f.score AS score, "
                         "f.client_request_id AS cid FROM llm_feedback AS f "
                         "INNER JOIN llm_requests AS r ON r.request_id = f.request_id ORDER BY f.score")
    assert scored == [{"owner": "team-a", "by_tenant": "team-a", "score": 0.1, "cid": "same-id-1"},
                      {"owner": "team-b", "by_tenant": "team-b", "score": 0.9, "cid": "same-id-1"}]
    # From ClickHouse too (a fresh gateway): each tenant's id resolves to its own row only.
    srv.__exit__(None, None, None)
    fresh = start()
    assert score(fresh, KEY_B, "same-id-1", 0.5).status_code == 200
    assert not_found(score(fresh, KEY_B, mine))
    flush(fresh)
    last = select_rows(tdb, "SELECT r.tenant AS owner FROM llm_feedback AS f "
                       "INNER JOIN llm_requests AS r ON r.request_id = f.request_id WHERE f.score = 0.5")
    assert last == [{"owner": "team-b"}]


def test_lookups_by_either_id_use_the_skip_indexes(start, tdb):
    srv = start()
    ask(srv, KEY_A, **{"x-request-id": "indexed-1"})
    flush(srv)
    client = chdb_client(tdb)
    try:
        for cond, index in (("request_id = toUUIDOrZero('00000000-0000-4000-8000-000000000000')", "idx_request_id"),
                            ("client_request_id = 'indexed-1'", "idx_client_request_id")):
            plan = client.raw_query(f"EXPLAIN indexes = 1 SELECT tenant FROM llm_requests WHERE {cond}",
                                    fmt="TSV").decode()
            assert f"Name: {index}" in plan, plan
    finally:
        client.close()
