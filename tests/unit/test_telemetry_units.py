"""Telemetry pieces without a store: tokens, prices, the row, read-only SQL checks, saved queries
and generated DDL."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gateway.config import parse_config
from gateway.config.telemetry import BodyLogging, PriceEntry, PricingSettings, TelemetrySettings
from gateway.core import outcome
from gateway.core.context import Attempt, RequestContext, Usage
from gateway.core.pricing import PriceTable
from gateway.core.request_body import RequestBody
from gateway.core.tokens import TokenCounter, encoding_name_for
from gateway.telemetry.queries import QueryRejected, check_read_only, resolve, saved_queries
from gateway.telemetry.record import (
    ATTEMPT_COLUMN_NAMES,
    REQUEST_COLUMN_NAMES,
    RowBuilder,
    encode_rows,
    format_ts,
    key_fingerprint,
    parse_metadata_header,
    scrub_secrets,
    to_uuid,
)
from gateway.telemetry.schema import SchemaOptions, ddl_script
from tests.support.telemetry import isolate_telemetry_data, wait_for  # noqa: F401

TOKENS = TokenCounter()


# --- tokens ---------------------------------------------------------------------------------
def test_encoding_choice():
    assert encoding_name_for("gpt-4o-mini") == "o200k_base"
    assert encoding_name_for("openai/gpt-4.1") == "o200k_base"
    assert encoding_name_for("o3-mini") == "o200k_base"
    assert encoding_name_for("gpt-4") == "cl100k_base"
    assert encoding_name_for("mock-gpt") == "cl100k_base"


def test_tiktoken_counts_match_openai_rules():
    # Known values: "hello world" is 2 tokens in both encodings; OpenAI's cookbook example below
    # counts 3 (per message) + tokens of role and content + 3 (reply priming).
    assert TOKENS.count_text("hello world", "gpt-4o") == 2
    assert TOKENS.count_text("hello world", "gpt-4") == 2
    assert TOKENS.count_text("<|endoftext|>", "gpt-4") > 1  # special-token text counted as text
    messages = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "hello world", "name": "bob"}]
    expected = 3 + (1 + 4) + 3 + (1 + 2 + 1 + 1) + 3
    from gateway.encodings import load
    enc = load("cl100k_base")
    assert len(enc.encode("system")) == 1 and len(enc.encode("You are helpful.")) == 4
    assert TOKENS.count_chat(messages, "gpt-4") == expected
    assert TOKENS.count_prompt("completions", {"prompt": ["hello world", "hello"]}, "gpt-3.5-turbo-instruct") == 3
    assert TOKENS.count_prompt("embeddings", {"input": [[1, 2, 3], "hello world"]}, "text-embedding-3-small") == 5
    parts = [{"type": "text", "text": "hello world"}, {"type": "image_url", "image_url": {"url": "x"}}]
    assert TOKENS.count_chat([{"role": "user", "content": parts}], "gpt-4o") == 3 + 1 + 2 + 85 + 3


def test_tiktoken_fallback_when_encodings_cannot_load(monkeypatch):
    counter = TokenCounter(load_timeout_s=5)
    monkeypatch.setattr(counter, "_load", lambda name: None)
    assert counter.count_text("abcdefgh", "gpt-4o") == 2  # ~4 characters per token


# --- prices ---------------------------------------------------------------------------------
def test_prices_prefix_cached_unknown_and_overrides():
    table = PriceTable()
    assert table.price("gpt-4o-2024-08-06").input == 2.5
    assert table.price("gpt-4o-mini-2024-07-18").input == 0.15  # longest name wins
    assert table.price("openai/gpt-4o").output == 10.0
    assert table.price("gpt-4oxyz") is None
    assert table.price("mock-gpt") is None
    # 1000 prompt (400 cached) + 100 completion on gpt-4o
    cost = table.cost(("gpt-4o",), 1000, 100, 400)
    assert cost == pytest.approx((600 * 2.5 + 400 * 1.25 + 100 * 10.0) / 1e6)
    assert table.cost(("", "unknown-model"), 10, 10) is None
    custom = PriceTable(PricingSettings(defaults=False, models={"mock-gpt": PriceEntry(input=1.0, output=2.0)}))
    assert custom.price("gpt-4o") is None
    assert custom.cost(("served-x", "mock-gpt"), 1_000_000, 500_000) == pytest.approx(2.0)


def test_cache_writes_have_their_own_rate_and_the_config_wins():
    table = PriceTable()
    # Anthropic: 100 uncached + 1000 read + 2000 written = 3100 prompt tokens, 50 completion
    assert table.cost(("claude-sonnet-4-20250514",), 3100, 50, 1000, 2000) == \
        pytest.approx((100 * 3.0 + 1000 * 0.30 + 2000 * 3.75 + 50 * 15.0) / 1e6)
    assert table.cost(("gpt-4o",), 100, 0, None, 100) == pytest.approx(100 * 2.5 / 1e6)  # no write rate: input
    settings = PricingSettings(models={"gpt-4": PriceEntry(input=1.0), "house": PriceEntry(input=7.0)})
    custom = PriceTable(settings)
    assert custom.price("gpt-4-0613").input == 1.0  # the override prices dated variants
    assert custom.price("gpt-4-turbo-2024-04-09").input == 10.0  # a closer shipped name keeps its price
    assert custom.cost(("gpt-4o-mini-2024-07-18", "gpt-4o-mini", "house"), 1_000_000, 0) == pytest.approx(7.0)


# --- the row ----------------------------------------------------------------------------------
def _builder(**kw) -> RowBuilder:
    return RowBuilder(config_hash="cfg123", instance="host-a", prices=PriceTable(), tokens=TOKENS, **kw)


def _ctx(**kw) -> RequestContext:
    base = dict(request_id="req-1", endpoint="chat/completions", t_start=100.0, ts_start=1_700_000_000.0)
    base.update(kw)
    return RequestContext(**base)


def _row(ctx, builder=None) -> dict:
    return dict(zip(REQUEST_COLUMN_NAMES, (builder or _builder()).request_row(ctx)))


def test_row_timings_itl_and_cost():
    ctx = _ctx(body={"model": "gpt-4o", "messages": [], "temperature": 0.2, "max_tokens": 9, "user": "u-7",
                     "stream": True, "metadata": {"team": "search", "n": 3}},
               model_requested="gpt-4o", stream=True, backend="b1", provider="openai", upstream_model="gpt-4o",
               model_served="gpt-4o-2024-08-06", attempts=1, status_code=200, finish_reason="stop",
               usage=Usage(prompt_tokens=100, completion_tokens=4, total_tokens=104, cached_tokens=20),
               t_upstream_start=100.010, t_first_token=100.050, t_end=100.200,
               chunk_times=[100.050, 100.060, 100.080, 100.110])
    r = _row(ctx)
    assert r["ts_start"] == "2023-11-14 22:13:20.000" and r["ts_end"] == "2023-11-14 22:13:20.200"
    assert r["ttft_ms"] == pytest.approx(50.0) and r["latency_ms"] == pytest.approx(200.0)
    assert r["upstream_latency_ms"] == pytest.approx(190.0) and r["gateway_overhead_ms"] == pytest.approx(10.0)
    assert r["itl_p50_ms"] == pytest.approx(20.0) and r["itl_max_ms"] == pytest.approx(30.0)
    assert r["itl_p95_ms"] == pytest.approx(29.0)
    assert r["output_tokens_per_s"] == pytest.approx(4 / 0.19)
    assert r["cost_usd"] == pytest.approx((80 * 2.5 + 20 * 1.25 + 4 * 10) / 1e6)
    assert r["tokens_estimated"] == 0 and r["cached_tokens"] == 20 and r["reasoning_tokens"] is None
    assert r["params"] == '{"max_tokens":9,"temperature":0.2}'
    assert r["metadata"] == {"team": "search", "n": "3"} and r["user"] == "u-7"
    assert r["config_hash"] == "cfg123" and r["instance"] == "host-a"
    uid, client_rid = to_uuid("req-1")
    assert r["request_id"] == uid and r["client_request_id"] == "req-1"


def test_metadata_header_forms_and_precedence():
    assert parse_metadata_header("team=a, feature = b ,bad") == {"team": "a", "feature": "b"}
    assert parse_metadata_header('{"team": "a", "n": 2, "x": null}') == {"team": "a", "n": "2"}
    ctx = _ctx(body={"metadata": {"team": "body", "k": "1"}}, headers={"x-gateway-metadata": "team=header"},
               metadata={"stage": "s"}, status_code=400)
    assert _row(ctx)["metadata"] == {"team": "header", "k": "1", "stage": "s"}


def test_secrets_never_reach_a_row():
    assert scrub_secrets("bad key sk-abcdef1234567890 for Bearer abc.def-123456") == \
        "bad key sk-*** for Bearer ***"
    assert scrub_secrets('{"api_key": "hunter22", "password=swordfish"}') == '{"api_key": "***", "password=***"}'
    assert scrub_secrets("http://user:pw123@host:8123/db") == "http://user:***@host:8123/db"
    ctx = _ctx(headers={"Authorization": "Bearer sk-live-secret-123"}, status_code=401,
               error_type="upstream_http_error", error_message="Incorrect API key provided: sk-live-secret-123")
    row = _builder().request_row(ctx)
    text = orjson.dumps(row).decode()
    assert "secret-123" not in text
    assert dict(zip(REQUEST_COLUMN_NAMES, row))["api_key_id"] == key_fingerprint({"Authorization": "Bearer sk-live-secret-123"})
    assert key_fingerprint({"Authorization": "Bearer sk-live-secret-123"}).startswith("key-")


def test_uuid_request_ids_and_traceparent():
    rid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = _row(_ctx(request_id=rid, headers={"traceparent": tp}))
    assert r["request_id"] == rid and r["client_request_id"] == "" and r["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_estimated_tokens_when_no_usage_and_nothing_for_gateway_errors():
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello world"}]}
    ok = _ctx(body=body, model_requested="gpt-4o", status_code=200, t_upstream_start=100.0, t_first_token=100.1,
              t_end=100.1, completion_text=["hello", " world"])
    r = _row(ok)
    assert (r["prompt_tokens"], r["completion_tokens"], r["tokens_estimated"]) == (3 + 1 + 2 + 3, 2, 1)
    gateway_error = _ctx(body=body, status_code=404, error_type="model_not_found", t_end=100.0)
    r = _row(gateway_error)
    assert (r["prompt_tokens"], r["completion_tokens"], r["total_tokens"], r["tokens_estimated"]) == (0, 0, 0, 0)
    assert r["upstream_latency_ms"] is None and r["ttft_ms"] is None and r["cost_usd"] is None


def test_cancelled_request_is_logged_as_client_closed():
    ctx = _ctx(stream=False, status_code=0, t_end=100.5)
    outcome.conclude(ctx)  # the handler concludes every request before its row is built
    r = _row(ctx)
    assert (r["status_code"], r["error_type"]) == (499, "client_closed")


def test_bodies_capped_and_redacted():
    b = _builder(bodies=BodyLogging(request=True, response=True, max_bytes=20,
                                    redact="tests.unit.test_telemetry_units:redact_digits"))
    raw = b'{"messages":"call 555-1234 now please"}'
    ctx = _ctx(body=RequestBody(orjson.loads(raw), raw), response_body=b"answer 42 " * 10, status_code=200)
    r = _row(ctx, b)
    assert r["request_body"] == '{"messages":"call ##' and len(r["request_body"].encode()) <= 20
    assert r["response_body"] == "answer ## answer ## "
    assert _row(ctx)["request_body"] == ""  # off by default


def redact_digits(kind: str, text: str) -> str:
    return "".join("#" if c.isdigit() else c for c in text)


def test_attempt_rows_from_the_router_log():
    ctx = _ctx(model_requested="m", status_code=200, t_end=101.0, t_upstream_start=100.0, attempts=2,
               attempt_log=[Attempt("a", "openai", "ma", 100.0, 100.2, None, 503, "5xx"),
                            Attempt("b", "vllm", "mb", 100.3, 101.0, 100.4, 200, "", backoff_ms=100.0)])
    rows = [dict(zip(ATTEMPT_COLUMN_NAMES, r)) for r in _builder().attempt_rows(ctx, "u")]
    assert [(r["attempt"], r["backend"], r["status_code"]) for r in rows] == [(1, "a", 503), (2, "b", 200)]
    assert rows[0]["ttft_ms"] is None and rows[1]["ttft_ms"] == pytest.approx(100.0)
    assert rows[1]["latency_ms"] == pytest.approx(700.0) and rows[1]["backoff_ms"] == 100.0


def test_rows_with_unencodable_text_still_serialise():
    row = _builder().request_row(_ctx(error_message="bad \ud800 surrogate", status_code=500, error_type="x"))
    line = encode_rows([row])
    assert b"bad ? surrogate" in line or b"bad \xef\xbf\xbd surrogate" in line
    assert format_ts(0.0006) == "1970-01-01 00:00:00.001"


# --- queries --------------------------------------------------------------------------------
@pytest.mark.parametrize("sql", [
    "SELECT 1", "  with x as (select 1) select * from x;", "SHOW TABLES", "DESCRIBE TABLE llm_requests",
    "EXPLAIN SELECT 1", "(SELECT 1)", "SELECT ';' AS semicolon -- trailing; comment",
    "/* comment; */ SELECT 'a''b'",
])
def test_read_only_sql_accepted(sql):
    assert check_read_only(sql)


@pytest.mark.parametrize("sql", [
    "INSERT INTO t VALUES (1)", "DROP TABLE llm_requests", "SELECT 1; DROP TABLE x", "select 1 into outfile '/tmp/x'",
    "", "-- only a comment", "ALTER TABLE t DELETE WHERE 1", "SET readonly = 0", "SYSTEM FLUSH LOGS",
    "SELECT 'unterminated",
])
def test_read_only_sql_rejected(sql):
    with pytest.raises(QueryRejected):
        check_read_only(sql)


def test_saved_queries_are_documented_and_resolve():
    queries = saved_queries()
    assert {"latency-by-model", "cost-by-tenant-daily", "error-rate-by-backend", "slowest-requests",
            "usage-by-metadata", "rollup-by-minute"} <= set(queries)
    for q in queries.values():
        assert q.description, q.name
        sql, params = resolve(None, q.name, None)
        assert set(params) == set(q.defaults)
    sql, params = resolve(None, "usage-by-metadata", {"key": "feature", "unused": "1"})
    assert params == {"key": "feature", "days": "7"}
    with pytest.raises(QueryRejected):
        resolve(None, "nope", None)
    with pytest.raises(QueryRejected):
        resolve("SELECT {x:UInt8}", None, None)  # missing parameter


# --- DDL -------------------------------------------------------------------------------------
def test_ddl_single_server_and_cluster():
    single = ddl_script(SchemaOptions("logs", ttl_days=90))
    assert "CREATE TABLE IF NOT EXISTS `logs`.`llm_requests`\n" in single
    assert "ENGINE = MergeTree\nPARTITION BY toYYYYMM(ts_start)\nORDER BY (tenant, model_requested, ts_start)" in single
    assert "TTL toDateTime(ts_start) + INTERVAL 90 DAY" in single
    assert "non_replicated_deduplication_window" in single and "ON CLUSTER" not in single
    assert "`request_id` UUID" in single and "`metadata` Map(LowCardinality(String), String)" in single
    assert "`ts_start` DateTime64(3, 'UTC')" in single and "`cost_usd` Nullable(Float64)" in single
    assert "`request_body` String CODEC(ZSTD(3))" in single
    assert "quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(latency_ms)" in single and "AggregatingMergeTree" in single
    cluster = ddl_script(SchemaOptions("logs", cluster="prod"))
    assert "CREATE TABLE IF NOT EXISTS `logs`.`llm_requests_local` ON CLUSTER `prod`" in cluster
    assert "ReplicatedMergeTree('/clickhouse/tables/{shard}/logs/llm_requests_local', '{replica}')" in cluster
    assert "ReplicatedAggregatingMergeTree(" in cluster
    assert ("CREATE TABLE IF NOT EXISTS `logs`.`llm_requests` ON CLUSTER `prod` AS `logs`.`llm_requests_local`\n"
            "ENGINE = Distributed(`prod`, `logs`, `llm_requests_local`, cityHash64(request_id))") in cluster
    assert "TO `logs`.`llm_requests_1m_local`" in cluster and "FROM `logs`.`llm_requests_local`" in cluster
    assert "CREATE DATABASE IF NOT EXISTS `logs` ON CLUSTER `prod`" in cluster
    assert "non_replicated_deduplication_window" not in cluster


def test_config_validation_paths():
    from gateway.config import ConfigError
    with pytest.raises(ConfigError) as err:
        parse_config("telemetry:\n  clickhouse:\n    dsn: mysql://x\n  batch_rows: 0\n")
    text = str(err.value)
    assert "telemetry.clickhouse.dsn" in text and "telemetry.batch_rows" in text
    cfg = parse_config("server: {admin_key: k}\npricing:\n  models:\n    my-model: {input: 1, output: 2}\n").config
    assert cfg.server.admin_key == "k" and cfg.pricing.models["my-model"].output == 2
    assert "admin_key" not in repr(cfg.server) or "k'" not in repr(cfg.server)
    t = TelemetrySettings()
    assert t.resolved_dsn(Path("/data")) == "chdb:///data/clickhouse"
    assert t.log.resolved_dir(Path("/data")) == Path("/data/log")
