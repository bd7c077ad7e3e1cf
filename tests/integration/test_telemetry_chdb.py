"""Telemetry through the real gateway into embedded chDB (clickhouse-connect's chDB backend),
driven with the official OpenAI SDK: every column of the row, the rollups, deduplication,
type round-trips through the request log, saved queries over real rows, and the admin endpoints."""

from __future__ import annotations

import time
import uuid

import httpx
import openai
import orjson
import pytest

from gateway.config.telemetry import ClickHouseSettings, LogSettings
from gateway.core.context import RequestContext, Usage
from gateway.core.pricing import PriceTable
from gateway.core.tokens import TokenCounter
from gateway.proxy.server import BackgroundServer
from gateway.telemetry import SINK
from gateway.telemetry.clickhouse import ClickHouseStore
from gateway.telemetry.facts import decode, encode_request
from gateway.telemetry.log import LogReader, LogWriter, Position
from gateway.telemetry.record import REQUEST_COLUMN_NAMES, REQUEST_COLUMNS, RowBuilder, encode_rows
from gateway.telemetry.schema import render
from tests.support.gateway import serve
from tests.support.telemetry import chdb_client, chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml, wait_for  # noqa: F401
from tests.support.telemetry_rows import flush, select

TOKENS = TokenCounter()

MODELS = """
backends:
  mock:
    type: mock
    mock: {ttft_ms: 5, itl_ms: 3, tokens: 12, chunk_tokens: 2}
  quiet:
    type: mock
    mock: {ttft_ms: 2, itl_ms: 2, tokens: 10, chunk_tokens: 1, usage: false}
  slow:
    type: mock
    mock: {ttft_ms: 5, itl_ms: 60, tokens: 60, chunk_tokens: 1, usage: false}
models:
  mock-gpt: {targets: [{backend: mock}]}
  no-usage: {targets: [{backend: quiet, model: gpt-4o}]}
  slow-stream: {targets: [{backend: slow}]}
pricing:
  models:
    mock-gpt: {input: 1.0, output: 2.0, cached_input: 0.5}
"""


@pytest.fixture
def gateway(tmp_path, tdb):
    """``gateway(extra_yaml="", admin_key=None) -> BackgroundServer`` writing to database ``tdb``."""
    started = []

    def start(extra: str = "", admin_key: str | None = None, **telemetry) -> BackgroundServer:
        server_yaml = f"server: {{admin_key: {admin_key}}}\n" if admin_key else ""
        text = MODELS + server_yaml + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool", **telemetry) + extra
        srv = serve(text)
        srv.__enter__()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.__exit__(None, None, None)


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["client_request_id"] or r["request_id"]: r for r in rows}


def test_every_column_for_json_stream_error_aborted_and_no_usage(gateway, tdb):
    srv = gateway()
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-client-key-1234567", max_retries=0)
    uid = str(uuid.uuid4())
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    # 1. JSON
    raw = client.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=[{"role": "user", "content": "Say hello to the gateway."}], user="user-42",
        temperature=0.5, max_tokens=12, metadata={"team": "search", "env": "test"},
        extra_headers={"x-request-id": uid, "traceparent": f"00-{trace}-00f067aa0ba902b7-01",
                       "x-gateway-metadata": "feature=summarise,env=prod", "User-Agent": "telemetry-test/1.0"})
    answer = raw.parse()
    # 2. stream (client did not ask for usage: the gateway asked for it anyway)
    chunks = list(client.chat.completions.create(
        model="mock-gpt", stream=True, messages=[{"role": "user", "content": "Stream please."}],
        extra_headers={"x-request-id": "stream-1"}))
    streamed_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # 3. error
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}],
                                       extra_headers={"x-request-id": "error-1"})
    # 4. upstream reports no usage: JSON and stream
    nu = client.chat.completions.create(model="no-usage", messages=[{"role": "user", "content": "count me"}],
                                        extra_headers={"x-request-id": "nousage-json"})
    nu_stream = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="no-usage", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "count me"}], extra_headers={"x-request-id": "nousage-stream"})
        if c.choices)
    # 5. aborted stream: read a few chunks, then hang up
    seen = ""
    with httpx.Client(timeout=30) as http:
        with http.stream("POST", f"{srv.url}/v1/chat/completions", headers={"x-request-id": "aborted-1"},
                         json={"model": "slow-stream", "stream": True,
                               "messages": [{"role": "user", "content": "a long answer"}]}) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: {"):
                    delta = orjson.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                    seen += delta
                    if len(seen.split()) >= 3:
                        break
    wait_for(lambda: httpx.get(f"{srv.url}/admin/telemetry").json()["written"] == 6, what="6 records logged")
    flush(srv)
    rows = by_id(select(tdb, "SELECT * FROM llm_requests"))
    assert len(rows) == 6

    # -- every column has its ClickHouse type
    types = {r["name"]: r["type"] for r in select(tdb, "DESCRIBE TABLE llm_requests")}
    assert types == {name: ctype.split(" CODEC")[0] for name, ctype in REQUEST_COLUMNS}

    j = rows[uid]
    # the client's own id (a UUID here) is kept as client_request_id; the row's id is the gateway's
    assert j["client_request_id"] == uid and j["request_id"] != uid and uuid.UUID(j["request_id"]).version == 4
    assert raw.headers["x-request-id"] == uid and j["trace_id"] == trace
    assert j["config_hash"] and j["instance"]
    assert time.time() - 60 < time.mktime(time.strptime(j["ts_start"][:19], "%Y-%m-%d %H:%M:%S")) <= time.time() + 1
    assert j["ts_end"] >= j["ts_start"]
    assert j["tenant"] == "" and j["api_key_id"].startswith("key-") and "client-key" not in orjson.dumps(j).decode()
    assert j["user"] == "user-42"
    assert j["metadata"] == {"team": "search", "env": "prod", "feature": "summarise"}  # header wins over body
    assert j["client_ip"] == "127.0.0.1" and j["user_agent"] == "telemetry-test/1.0"
    assert j["endpoint"] == "chat/completions" and j["model_requested"] == "mock-gpt" and j["stream"] is False
    assert orjson.loads(j["params"]) == {"temperature": 0.5, "max_tokens": 12}
    assert (j["prompt_id"], j["prompt_version"], j["prompt_label"]) == ("", None, "")
    assert (j["backend"], j["provider"], j["model_served"], j["attempts"]) == ("mock", "mock", "mock-gpt", 1)
    assert j["cache_status"] == "none"  # off by default: no cache stage looked at it
    assert j["route_rule"] == "" or isinstance(j["route_rule"], str)
    assert (j["status_code"], j["error_type"], j["error_message"], j["finish_reason"], j["truncated"]) == \
        (200, "", "", "length", False)
    assert (j["prompt_tokens"], j["completion_tokens"], j["total_tokens"]) == \
        (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens)
    assert (j["cached_tokens"], j["reasoning_tokens"], j["tokens_estimated"]) == (None, None, 0)
    assert 0 < j["ttft_ms"] <= j["latency_ms"] and j["upstream_latency_ms"] <= j["latency_ms"]
    assert j["gateway_overhead_ms"] == pytest.approx(j["latency_ms"] - j["upstream_latency_ms"], abs=1e-6)
    assert j["itl_p50_ms"] is None and j["itl_p95_ms"] is None and j["itl_max_ms"] is None
    assert j["output_tokens_per_s"] == pytest.approx(j["completion_tokens"] / (j["upstream_latency_ms"] / 1000))
    assert j["cost_usd"] == pytest.approx((j["prompt_tokens"] * 1.0 + j["completion_tokens"] * 2.0) / 1e6)
    assert (j["request_body"], j["response_body"]) == ("", "")

    s = rows["stream-1"]
    assert s["stream"] is True and s["finish_reason"] == "stop" and s["truncated"] is False
    assert s["status_code"] == 200 and s["tokens_estimated"] == 0 and s["completion_tokens"] == 12
    assert uuid.UUID(s["request_id"]).version == 4 and s["client_request_id"] == "stream-1"  # never derived from it
    assert 0 < s["ttft_ms"] < s["latency_ms"]
    assert 0 <= s["itl_p50_ms"] <= s["itl_p95_ms"] <= s["itl_max_ms"] < s["latency_ms"]
    assert s["output_tokens_per_s"] > 0 and s["cost_usd"] > 0 and streamed_text

    e = rows["error-1"]
    assert (e["status_code"], e["error_type"], e["backend"], e["attempts"]) == (404, "model_not_found", "", 0)
    assert "no-such-model" in e["error_message"] and e["cost_usd"] is None
    assert (e["prompt_tokens"], e["completion_tokens"], e["tokens_estimated"]) == (0, 0, 0)
    assert e["upstream_latency_ms"] is None and e["ttft_ms"] is None and e["gateway_overhead_ms"] == e["latency_ms"]

    n = rows["nousage-json"]
    prompt = TOKENS.count_chat([{"role": "user", "content": "count me"}], "gpt-4o")
    assert (n["tokens_estimated"], n["prompt_tokens"], n["completion_tokens"]) == \
        (1, prompt, TOKENS.count_text(nu.choices[0].message.content, "gpt-4o"))
    assert n["model_served"] == "gpt-4o" and n["cost_usd"] == pytest.approx(
        (prompt * 2.5 + n["completion_tokens"] * 10.0) / 1e6)  # priced by the served model
    ns = rows["nousage-stream"]
    assert (ns["tokens_estimated"], ns["prompt_tokens"], ns["completion_tokens"]) == \
        (1, prompt, TOKENS.count_text(nu_stream, "gpt-4o"))

    a = rows["aborted-1"]
    assert (a["status_code"], a["error_type"], a["truncated"], a["stream"]) == (499, "client_closed", True, True)
    assert a["tokens_estimated"] == 1 and a["finish_reason"] == ""
    assert TOKENS.count_text(seen, "mock") <= a["completion_tokens"] < 60
    assert a["prompt_tokens"] == TOKENS.count_chat([{"role": "user", "content": "a long answer"}], "slow-stream")

    # -- one attempt row per upstream call
    attempts = select(tdb, "SELECT request_id, attempt, backend, status_code FROM llm_attempts")
    assert len(attempts) == 5 and all(r["attempt"] == 1 for r in attempts)
    assert j["request_id"] in {r["request_id"] for r in attempts}


def test_bodies_logged_when_enabled(gateway, tdb):
    srv = gateway(extra="  bodies: {request: true, response: true, max_bytes: 200}\n")
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-x", max_retries=0)
    client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "body please"}])
    flush(srv)
    (row,) = select(tdb, "SELECT request_body, response_body FROM llm_requests")
    assert row["request_body"].startswith('{"') and "body please" in row["request_body"]
    assert row["response_body"].startswith('{"id":"chatcmpl-') and len(row["response_body"]) == 200
    codecs = select(tdb, "SELECT name, compression_codec FROM system.columns WHERE database = currentDatabase() "
                         "AND table = 'llm_requests' AND name LIKE '%_body'")
    assert {c["compression_codec"] for c in codecs} == {"CODEC(ZSTD(3))"}


def _tricky_row(builder: RowBuilder) -> list:
    return builder.request_row(_tricky_context())


def _tricky_context() -> RequestContext:
    return RequestContext(request_id=str(uuid.uuid4()), endpoint="chat/completions", t_start=10.0,
                         ts_start=1_717_171_717.987, body={"user": "ü\"ser\n\\", "metadata": {"ключ": "値 😀", "q": "a'b"}},
                         model_requested="m\t1", stream=True, status_code=200, t_end=10.123456789,
                         usage=Usage(prompt_tokens=4_000_000_000, completion_tokens=1, total_tokens=4_000_000_001 % 2**32,
                                     cached_tokens=0, reasoning_tokens=7),
                         t_upstream_start=10.0000001, t_first_token=10.1, chunk_times=[10.1, 10.1 + 1e-9],
                         error_message="line1\nline2 \x00 nul", finish_reason="stop", prompt_version=3)


def test_every_type_round_trips_through_the_request_log(tmp_path, tdb):
    """A context's record, written to the log, read back and built into a row, inserted twice with
    the same token (a replay after an ambiguous failure): one row, every value intact."""
    builder = RowBuilder(config_hash="h", instance="i", prices=PriceTable(), tokens=TOKENS)
    ctx = _tricky_context()
    with LogWriter(tmp_path / "log", LogSettings(fsync="never")) as writer:
        assert writer.append(encode_request(ctx, keep_text=True))
        (record,) = LogReader(tmp_path / "log").read(writer.writer_id, Position.origin())
    row = builder.request_row(decode(record.payload))
    assert row == builder.request_row(ctx)
    row[REQUEST_COLUMN_NAMES.index("cost_usd")] = 0.1 + 0.2  # a float that needs all 17 digits
    store = ClickHouseStore(ClickHouseSettings(database=tdb), chdb_dsn())
    try:
        store.insert("llm_requests", REQUEST_COLUMN_NAMES, encode_rows([row]), "token-1")
        store.insert("llm_requests", REQUEST_COLUMN_NAMES, encode_rows([row]), "token-1")  # replay
    finally:
        store.close()
    (back,) = select(tdb, "SELECT * FROM llm_requests")
    expected = dict(zip(REQUEST_COLUMN_NAMES, row))
    for name in REQUEST_COLUMN_NAMES:
        assert back[name] == expected[name], name
    exact = select(tdb, "SELECT cost_usd = 0.30000000000000004 AS same, toUnixTimestamp64Milli(ts_start) AS ms, "
                        "toTypeName(ts_start) AS t FROM llm_requests")
    assert exact == [{"same": 1, "ms": 1_717_171_717_987, "t": "DateTime64(3, 'UTC')"}]


def test_replayed_batches_count_once_in_table_and_rollups(tdb):
    builder = RowBuilder(config_hash="h", instance="i", prices=PriceTable(), tokens=TOKENS)
    rows = []
    for i in range(20):
        ctx = RequestContext(request_id=f"r{i}", endpoint="chat/completions", t_start=0.0, ts_start=time.time(),
                             model_requested="m", backend="b", status_code=500 if i % 4 == 0 else 200,
                             t_end=0.010 * (i + 1), usage=Usage(prompt_tokens=10, completion_tokens=5))
        rows.append(builder.request_row(ctx))
    store = ClickHouseStore(ClickHouseSettings(database=tdb), chdb_dsn())
    try:
        payload = encode_rows(rows)
        for _ in range(3):  # the same batch, retried after ambiguous failures
            store.insert("llm_requests", REQUEST_COLUMN_NAMES, payload, "batch-token-1:llm_requests")
        store.insert("llm_requests", REQUEST_COLUMN_NAMES, payload, "batch-token-2:llm_requests")  # a new batch
    finally:
        store.close()
    assert select(tdb, "SELECT count() AS n, uniqExact(request_id) AS u FROM llm_requests") == [{"n": 40, "u": 20}]
    (roll,) = select(tdb, "SELECT countMerge(requests) AS n, sumMerge(errors) AS e, sumMerge(prompt_tokens) AS p, "
                          "quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(latency_ms) AS q FROM llm_requests_1m")
    assert (roll["n"], roll["e"], roll["p"]) == (40, 10, 400)
    assert 80 <= roll["q"][0] <= 130 and roll["q"][3] <= 200


def test_migrations_are_versioned_and_idempotent(tdb):
    first = ClickHouseStore(ClickHouseSettings(database=tdb, ttl_days=30), chdb_dsn())
    second = ClickHouseStore(ClickHouseSettings(database=tdb, ttl_days=30), chdb_dsn())
    try:
        first.ensure()
        versions = [m.version for m in render(first.schema)[1]]
        assert first.migrated == versions and versions[:2] == [1, 2]
        second.ensure()
        assert second.migrated == []
    finally:
        first.close()
        second.close()
    assert [r["version"] for r in select(tdb, "SELECT version FROM schema_migrations FINAL ORDER BY version")] == versions
    tables = {r["name"] for r in select(tdb, "SHOW TABLES")}
    assert {"llm_requests", "llm_attempts", "llm_requests_1m", "llm_requests_1m_mv", "schema_migrations"} <= tables
    (ddl,) = select(tdb, "SELECT create_table_query AS q FROM system.tables WHERE database = currentDatabase() "
                         "AND name = 'llm_requests'")
    assert "TTL toDateTime(ts_start) + toIntervalDay(30)" in ddl["q"] and "PARTITION BY toYYYYMM(ts_start)" in ddl["q"]


def _seed_rows(srv: BackgroundServer) -> None:
    """Rows from several tenants/models/backends/teams, written by the gateway's own sink."""
    sink = srv.app[SINK]
    now = time.time()
    specs = [  # tenant, model, backend, status, latency s, team, prompt, completion, cost-priced model
        ("acme", "mock-gpt", "mock", 200, 0.100, "search", 100, 10),
        ("acme", "mock-gpt", "mock", 200, 0.300, "search", 200, 20),
        ("acme", "gpt-4o", "openai", 500, 0.050, "ads", 50, 0),
        ("globex", "gpt-4o", "openai", 200, 0.900, None, 1000, 100),
        ("globex", "mock-gpt", "mock", 429, 0.020, "ads", 10, 0),
    ]
    for i, (tenant, model, backend, status, lat, team, p, c) in enumerate(specs):
        ctx = RequestContext(request_id=f"seed-{i}", endpoint="chat/completions", t_start=1000.0, ts_start=now - 5,
                             model_requested=model, backend=backend, provider="mock", status_code=status,
                             tenant=tenant, t_upstream_start=1000.001, t_first_token=1000.0 + lat / 2,
                             t_end=1000.0 + lat, stream=True, usage=Usage(prompt_tokens=p, completion_tokens=c),
                             metadata={"team": team} if team else None,
                             error_type="upstream_http_error" if status >= 400 else "")
        sink.emit(ctx)


def admin_query(srv, payload: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{srv.url}/admin/query", json=payload, headers=headers or {}, timeout=30)


def test_saved_queries_over_real_rows(gateway, tdb):
    srv = gateway()
    srv.call(_async(_seed_rows, srv))
    flush(srv)

    def run(name, **params):
        resp = admin_query(srv, {"saved": name, "format": "jsonl", "params": params})
        assert resp.status_code == 200, resp.text
        return [orjson.loads(line) for line in resp.content.splitlines()]

    lat = {r["model"]: r for r in run("latency-by-model")}
    assert (lat["mock-gpt"]["requests"], lat["mock-gpt"]["errors"], lat["gpt-4o"]["requests"]) == (3, 1, 2)
    assert lat["mock-gpt"]["p50_ms"] == pytest.approx(100.0, abs=0.1)
    assert lat["gpt-4o"]["ttft_p99_ms"] <= 450.1
    assert run("latency-by-model", since_ms=int(time.time() * 1000) + 60_000) == []

    cost = {r["tenant"]: r for r in run("cost-by-tenant-daily")}
    assert (cost["acme"]["requests"], cost["acme"]["prompt_tokens"], cost["acme"]["completion_tokens"]) == (3, 350, 30)
    assert cost["acme"]["total_cost_usd"] == pytest.approx((300 * 1.0 + 30 * 2.0) / 1e6 + 50 * 2.5 / 1e6)
    assert cost["globex"]["total_cost_usd"] == pytest.approx((1000 * 2.5 + 100 * 10.0 + 10 * 1.0) / 1e6)
    assert cost["acme"]["unpriced"] == 0

    errors = {r["backend"]: r for r in run("error-rate-by-backend")}
    assert (errors["openai"]["requests"], errors["openai"]["errors"]) == (2, 1)
    assert errors["mock"]["error_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert errors["mock"]["top_error"] == "upstream_http_error" and errors["mock"]["attempts"] == 3

    slow = run("slowest-requests", limit=2)
    assert [r["latency_ms"] for r in slow] == [900.0, 300.0]

    teams = {r["value"]: r for r in run("usage-by-metadata")}
    assert (teams["search"]["requests"], teams["ads"]["requests"], teams["(none)"]["requests"]) == (2, 2, 1)
    assert {r["value"] for r in run("usage-by-metadata", key="nope")} == {"(none)"}

    rollup = run("rollup-by-minute")
    assert sum(r["requests"] for r in rollup) == 5 and sum(r["errors"] for r in rollup) == 2
    assert sum(r["prompt_tokens"] for r in rollup) == 1360

    table = admin_query(srv, {"saved": "latency-by-model"})
    assert table.headers["Content-Type"].startswith("text/plain") and "mock-gpt" in table.text and "┌" in table.text
    csv = admin_query(srv, {"sql": "SELECT tenant, count() AS n FROM llm_requests GROUP BY tenant ORDER BY tenant",
                            "format": "csv"})
    assert csv.text.splitlines() == ['"tenant","n"', '"acme",3', '"globex",2']


def _async(fn, *args):
    async def run():
        fn(*args)
    return run()


def test_admin_query_is_read_only_and_authenticated(gateway, tdb):
    srv = gateway(admin_key="adm-secret-1")
    good = {"Authorization": "Bearer adm-secret-1"}
    assert httpx.get(f"{srv.url}/admin/telemetry").status_code == 401
    assert httpx.get(f"{srv.url}/admin/telemetry", headers={"Authorization": "Bearer nope"}).status_code == 401
    stats = httpx.get(f"{srv.url}/admin/telemetry", headers=good).json()
    assert stats["enabled"] and stats["ingester"]["store"] == "up" and stats["ingester"]["target"] == chdb_dsn()
    assert admin_query(srv, {"sql": "SELECT 1"}).status_code == 401
    assert admin_query(srv, {"sql": "SELECT 1 AS one", "format": "jsonl"}, good).json() == {"one": 1}
    rejected = admin_query(srv, {"sql": "DROP TABLE llm_requests"}, good)
    assert rejected.status_code == 400 and rejected.json()["error"]["code"] == "query_rejected"
    # passes the statement check, but readonly=1 on the server side still refuses to touch files
    refused = admin_query(srv, {"sql": "SELECT * FROM file('/etc/hostname', 'LineAsString')"}, good)
    assert refused.status_code == 400 and "READONLY" in refused.json()["error"]["message"]
    bad = admin_query(srv, {"sql": "SELECT nope FROM llm_requests"}, good)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "query_failed"
    listed = httpx.get(f"{srv.url}/admin/queries", headers=good).json()["queries"]
    assert any(q["name"] == "latency-by-model" and q["params"] == {"minutes": "60", "since_ms": "0"} for q in listed)


def test_admin_without_key_answers_local_requests_only():
    from gateway.access.auth import admin_denied  # the one check in front of every /admin path

    class Req:
        method = "GET"

        def __init__(self, remote, auth="", host="localhost:8080"):
            self.remote = remote
            self.headers = {"Host": host, "Authorization": auth} if auth else {"Host": host}

    assert admin_denied(Req("127.0.0.1"), None) is None and admin_denied(Req("::1"), None) is None
    assert admin_denied(Req("10.1.2.3"), None).status == 403 and admin_denied(Req(None), None).status == 403
    assert admin_denied(Req("127.0.0.1", host="rebind.attacker.example"), None).status == 403
    assert admin_denied(Req("127.0.0.1"), "k1").status == 401  # with a key, loopback needs it too
    assert admin_denied(Req("10.1.2.3", "Bearer k1"), "k1") is None


def test_telemetry_off(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_GATEWAY_TELEMETRY", "off")
    with serve(MODELS) as srv:
        assert SINK not in srv.app
        assert httpx.get(f"{srv.url}/admin/telemetry").json() == {"enabled": False}
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-x", max_retries=0)
        assert client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hi"}]).choices
