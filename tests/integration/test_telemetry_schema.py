"""Schema care on real chDB: look-ups by id read a few granules (bloom-filter skip indexes, shown
with ``EXPLAIN indexes=1`` on the dashboard's and ``sessions show``'s own statements); a store
created by schema version 7 (main before these indexes, codecs and column) upgrades in place;
the row TTL follows ``ttl_days`` at every start; cache writes get a column of their own."""

from __future__ import annotations

import logging
import re

import httpx
import openai
import pytest

from gateway.config.telemetry import ClickHouseSettings
from gateway.dashboard.panels import request_detail
from gateway.telemetry.clickhouse import ClickHouseStore
from gateway.telemetry.queries import resolve
from gateway.telemetry.schema import SchemaOptions, render
from tests.support.fake_upstream import named_sse_event
from tests.support.gateway import serve
from tests.support.polling import wait_for
from tests.support.telemetry import chdb_client, chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml  # noqa: F401
from tests.support.telemetry_rows import flush, select

ROWS = 200_000  # ~25 granules of 8,192 rows: enough for a skipped granule to show


def open_store(database: str, ttl_days: int | None = None) -> list[int]:
    """Start a store on ``database`` the way the gateway does (connect, migrate, TTL); returns
    the migration versions it applied."""
    store = ClickHouseStore(ClickHouseSettings(database=database, ttl_days=ttl_days), chdb_dsn())
    try:
        store.ensure()
        return store.migrated
    finally:
        store.close()


def fill(client, database: str, rows: int = ROWS) -> None:
    """``rows`` requests 10 ms apart (sessions of 8), each with one attempt."""
    client.command(f"""INSERT INTO `{database}`.llm_requests
    (request_id, ts_start, ts_end, trace_id, tenant, model_requested, client_request_id, session_id)
SELECT generateUUIDv4(), now64(3, 'UTC') - toIntervalMillisecond(number * 10),
    now64(3, 'UTC') - toIntervalMillisecond(number * 10) + toIntervalMillisecond(250),
    lower(hex(MD5(toString(number)))), 'acme', 'gpt-4o', concat('client-', toString(number)),
    concat('session-', toString(intDiv(number, 8)))
FROM numbers({rows})""")
    client.command(f"""INSERT INTO `{database}`.llm_attempts (request_id, attempt, ts_start, backend)
SELECT request_id, 1, ts_start, 'openai' FROM `{database}`.llm_requests""")


def granules(client, sql: str, params: dict | None = None) -> tuple[int, int, set[str]]:
    """``(granules read, granules in the table, skip indexes consulted)`` of one statement, from
    ``EXPLAIN indexes=1``: the first ``Granules: a/b`` is the table's total, the last what is
    left to read after every index (``(0, 0, …)`` for an empty table)."""
    lines = [r[0] for r in client.query("EXPLAIN indexes=1 " + sql, parameters=params or None).result_rows]
    pairs = [(int(m.group(1)), int(m.group(2))) for line in lines if (m := re.search(r"Granules: (\d+)/(\d+)", line))]
    names = {line.split("Name:", 1)[1].strip() for line in lines if "Name:" in line}
    return (pairs[-1][0], pairs[0][1], names) if pairs else (0, 0, names)


def test_lookups_by_id_read_a_few_granules(tdb):
    open_store(tdb)
    client = chdb_client(tdb)
    try:
        fill(client, tdb)
        (rid, session, trace), = client.query(
            "SELECT toString(request_id), session_id, trace_id FROM llm_requests "
            "WHERE client_request_id = 'client-123457'").result_rows
        baseline = granules(client, "SELECT * FROM llm_requests WHERE user = 'nobody'")  # a column without index
        assert baseline[0] == baseline[1] >= 20

        # the dashboard's request detail, by the gateway's id and by the client's: its own statements
        plans: list[tuple[str, tuple[int, int, set[str]]]] = []

        def fetch(sql: str, params: dict) -> list[dict]:
            plans.append((sql, granules(client, sql, params)))
            return list(client.query(sql, parameters=params).named_results())

        for wanted in (rid, "client-123457"):
            plans.clear()
            detail = request_detail(fetch, wanted)
            assert detail is not None and detail["request"]["client_request_id"] == "client-123457"
            assert len(detail["attempts"]) == 1
            (_, (read, total, names)), (_, (a_read, a_total, a_names)), _feedback = plans
            assert read <= 2 and total >= 20 and {"idx_request_id", "idx_client_request_id"} <= names
            assert a_read <= 2 and a_total >= 20 and "idx_request_id" in a_names

        # `sessions show`: the saved query it runs
        sql, params = resolve(None, "session-tree", {"session": session})
        read, total, names = granules(client, sql, params)
        assert read <= 2 and total >= 20 and "idx_session_id" in names
        assert len(list(client.query(sql, parameters=params).named_results())) == 8

        # a trace's rows
        sql, params = "SELECT count() FROM llm_requests WHERE trace_id = {t:String}", {"t": trace}
        read, total, names = granules(client, sql, params)
        assert read <= 2 and total >= 20 and "idx_trace_id" in names
        assert client.query(sql, parameters=params).result_rows == [(1,)]
    finally:
        client.close()


def _as_of_version_7(stmt: str) -> str:
    """A statement as main wrote it at schema version 7: no timestamp codec, no cache-write column."""
    return (stmt.replace(" CODEC(Delta, ZSTD)", "").replace("    `cache_write_tokens` Nullable(UInt32),\n", "")
            .replace("    `row_flags` Array(LowCardinality(String)),\n", "")
            .replace("    `audio_seconds` Nullable(Float64),\n", "")
            .replace("    `refusal` Bool,\n", "").replace(",\n    `rater` String\n", "\n"))


def _ts_bytes(database: str) -> int:
    return select(database, "SELECT sum(column_data_compressed_bytes) AS b FROM system.parts_columns WHERE active "
                            "AND database = currentDatabase() AND table = 'llm_requests' AND column = 'ts_start'")[0]["b"]


def test_a_version_7_store_upgrades_in_place(tdb):
    bootstrap, migrations = render(SchemaOptions(database=tdb))
    client = chdb_client()
    try:
        for stmt in bootstrap:
            client.command(stmt)
        for m in migrations[:7]:
            for stmt in m.statements:
                client.command(_as_of_version_7(stmt))
            client.command(f"INSERT INTO `{tdb}`.schema_migrations VALUES ({m.version}, 'v7', now64(3))")
        assert "cache_write_tokens" not in {r["name"] for r in select(tdb, "DESCRIBE TABLE llm_requests")}
        fill(client, tdb)
        before = _ts_bytes(tdb)

        assert open_store(tdb) == [m.version for m in migrations[7:]]  # 8 and every later one
        columns = {r["name"]: r["type"] for r in select(tdb, "DESCRIBE TABLE llm_requests")}
        assert columns["cache_write_tokens"] == "Nullable(UInt32)"
        assert columns["row_flags"] == "Array(LowCardinality(String))"
        assert columns["audio_seconds"] == "Nullable(Float64)"
        assert columns["refusal"] == "Bool"
        assert {r["name"]: r["type"] for r in select(tdb, "DESCRIBE TABLE llm_feedback")}["rater"] == "String"
        assert select(tdb, "SELECT countIf(cache_write_tokens IS NULL) AS n FROM llm_requests")[0]["n"] == ROWS
        for table, column in (("llm_requests", "ts_start"), ("llm_requests", "ts_end"), ("llm_attempts", "ts_start"),
                              ("llm_feedback", "ts"), ("prompt_versions", "first_seen")):
            ddl = select(tdb, f"SHOW CREATE TABLE {table}")[0]["statement"]
            assert f"`{column}` DateTime64(3, 'UTC') CODEC(Delta(8), ZSTD(1))" in ddl, (table, column)
        indexes = {(r["table"], r["name"]) for r in select(
            tdb, "SELECT table, name FROM system.data_skipping_indices WHERE database = currentDatabase()")}
        assert indexes == {("llm_requests", "idx_request_id"), ("llm_requests", "idx_client_request_id"),
                           ("llm_requests", "idx_session_id"), ("llm_requests", "idx_trace_id"),
                           ("llm_attempts", "idx_request_id")}

        # the parts written before the upgrade get the new indexes (MATERIALIZE INDEX), not only merged ones
        wait_for(lambda: select(tdb, "SELECT countIf(NOT is_done) AS n FROM system.mutations "
                                     "WHERE database = currentDatabase()")[0]["n"] == 0, what="index mutations done")
        session = select(tdb, "SELECT session_id FROM llm_requests WHERE client_request_id = 'client-4242'")[0]
        read, total, names = granules(client, f"SELECT * FROM `{tdb}`.llm_requests WHERE session_id = {{s:String}}",
                                      {"s": session["session_id"]})
        assert read <= 2 and total >= 20 and "idx_session_id" in names

        # rewritten parts store timestamps with Delta + ZSTD: smaller than the default LZ4
        client.command(f"OPTIMIZE TABLE `{tdb}`.llm_requests FINAL")
        after = _ts_bytes(tdb)
        print(f"ts_start of {ROWS} rows: {before} bytes compressed before, {after} after Delta+ZSTD")
        assert after < before / 2
        assert open_store(tdb) == []  # nothing left to apply
    finally:
        client.close()


def _ttl(database: str, table: str) -> str:
    ddl = select(database, f"SHOW CREATE TABLE {table}")[0]["statement"]
    m = re.search(r"\nTTL (.*)\n", ddl)
    return m.group(1) if m else ""


def test_ttl_follows_ttl_days_at_every_start(tdb, caplog):
    caplog.set_level(logging.INFO, logger="gateway.telemetry")

    def changes() -> list[str]:
        out = [r.getMessage() for r in caplog.records if "ttl_days is" in r.getMessage()]
        caplog.clear()
        return out

    open_store(tdb, ttl_days=30)
    assert _ttl(tdb, "llm_requests") == _ttl(tdb, "llm_attempts") == "toDateTime(ts_start) + toIntervalDay(30)"
    assert changes() == []  # created with it: nothing to change
    client = chdb_client(tdb)
    try:
        for days in (1, 10):
            client.command(f"INSERT INTO llm_requests (request_id, ts_start, ts_end) "
                           f"VALUES (generateUUIDv4(), now64(3) - toIntervalDay({days}), now64(3))")
            client.command(f"INSERT INTO llm_attempts (request_id, attempt, ts_start) "
                           f"VALUES (generateUUIDv4(), 1, now64(3) - toIntervalDay({days}))")
    finally:
        client.close()

    open_store(tdb, ttl_days=7)
    assert _ttl(tdb, "llm_requests") == _ttl(tdb, "llm_attempts") == "toDateTime(ts_start) + toIntervalDay(7)"
    assert [m.split(" MODIFY TTL")[1] for m in changes()] == [" toDateTime(ts_start) + INTERVAL 7 DAY"] * 2
    # the shorter TTL is applied to the rows already stored: the 10-day-old ones go
    wait_for(lambda: [select(tdb, f"SELECT count() AS n FROM {t}")[0]["n"] for t in ("llm_requests", "llm_attempts")]
             == [1, 1], what="the rows older than 7 days expired")
    open_store(tdb, ttl_days=7)
    assert changes() == []  # unchanged: no ALTER at start-up

    open_store(tdb, ttl_days=None)  # unset: keep rows forever
    assert _ttl(tdb, "llm_requests") == _ttl(tdb, "llm_attempts") == ""
    assert [m.endswith("REMOVE TTL") for m in changes()] == [True, True]
    open_store(tdb, ttl_days=None)
    assert changes() == []


# --- cache reads, cache writes and reasoning ------------------------------------------------------
ANTHROPIC_USAGE = {"input_tokens": 10, "cache_creation_input_tokens": 2048, "cache_read_input_tokens": 100,
                   "output_tokens": 5}


def _anthropic_stream() -> list[bytes]:
    return [named_sse_event({"type": "message_start", "message": {
                "id": "msg_s", "type": "message", "role": "assistant", "model": "claude-sonnet-4", "content": [],
                "usage": {"input_tokens": 7, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 0,
                          "output_tokens": 1}}}),
            named_sse_event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            named_sse_event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            named_sse_event({"type": "content_block_stop", "index": 0}),
            named_sse_event({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}}),
            named_sse_event({"type": "message_stop"})]


def test_cache_writes_reads_and_reasoning_have_columns_of_their_own(upstream, tdb, tmp_path):
    config = f"""
backends:
  claude: {{type: anthropic, base_url: {upstream.url}, api_key: sk-ant}}
  oai: {{type: openai, base_url: {upstream.url}, api_key: sk-oai}}
models:
  claude: {{targets: [{{backend: claude, model: claude-sonnet-4}}]}}
  gpt: {{targets: [{{backend: oai, model: gpt-4o}}]}}
""" + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool")
    with serve(config) as srv:
        client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="unused", max_retries=0)
        upstream.json({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
                       "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "usage": ANTHROPIC_USAGE},
                      times=1)
        answer = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}],
                                                extra_headers={"x-request-id": "json"})
        assert answer.usage.prompt_tokens == 2158
        # the client sees the writes too, under the name OpenAI's SDK knows (extras are kept on older ones)
        assert answer.usage.prompt_tokens_details.model_dump()["cache_write_tokens"] == 2048
        upstream.sse(_anthropic_stream(), times=1)
        stream = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}],
                                                stream=True, extra_headers={"x-request-id": "stream"})
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hi"
        upstream.json({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 80, "completion_tokens": 20, "total_tokens": 100,
                      "prompt_tokens_details": {"cached_tokens": 64},
                      "completion_tokens_details": {"reasoning_tokens": 12}}}, times=1)
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"x-request-id": "openai"})
        wait_for(lambda: httpx.get(f"{srv.url}/admin/telemetry").json()["written"] == 3, what="3 records logged")
        flush(srv)
    rows = {r["client_request_id"]: r for r in select(
        tdb, "SELECT client_request_id, prompt_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, cost_usd "
             "FROM llm_requests")}
    assert {k: (r["prompt_tokens"], r["cached_tokens"], r["cache_write_tokens"], r["reasoning_tokens"])
            for k, r in rows.items()} == {"json": (2158, 100, 2048, None), "stream": (307, 0, 300, None),
                                          "openai": (80, 64, None, 12)}
    # reads and writes at their own rates (claude-sonnet-4: input 3.00, read 0.30, write 3.75, output 15.00 per 1M)
    assert rows["json"]["cost_usd"] == pytest.approx(((2158 - 100 - 2048) * 3.0 + 100 * 0.30 + 2048 * 3.75
                                                      + 5 * 15.0) / 1e6)

