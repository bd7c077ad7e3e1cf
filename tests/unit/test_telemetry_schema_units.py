"""Schema care without a store: the TTL statements for each state of a table, the version-8 DDL
on one server and on a cluster, where the table definitions live, and cache-write tokens from
an Anthropic answer to the row (a chain's row sums its steps')."""

from __future__ import annotations

import ast
from pathlib import Path

from gateway.core.context import RequestContext, Usage
from gateway.core.pricing import PriceTable
from gateway.core.tokens import TokenCounter
from gateway.providers.anthropic import translate_usage
from gateway.telemetry.record import REQUEST_COLUMN_NAMES, RowBuilder
from gateway.telemetry.schema import SchemaOptions, ddl_script, render
from gateway.telemetry.ttl import table_ttl, ttl_query, ttl_statements

REPO = Path(__file__).resolve().parents[2]
ENGINE = ("MergeTree PARTITION BY toYYYYMM(ts_start) ORDER BY (tenant, model_requested, ts_start) "
          "TTL toDateTime(ts_start) + toIntervalDay(30) SETTINGS non_replicated_deduplication_window = 10000")


def test_table_ttl_reads_the_clause_clickhouse_prints():
    assert table_ttl(ENGINE) == "toDateTime(ts_start) + toIntervalDay(30)"
    assert table_ttl(ENGINE.replace(" TTL toDateTime(ts_start) + toIntervalDay(30)", "")) == ""
    assert table_ttl("MergeTree ORDER BY x TTL toDateTime(ts_start) + toIntervalDay(9)") == \
        "toDateTime(ts_start) + toIntervalDay(9)"


def test_ttl_statements_change_only_what_differs():
    at_30 = "toDateTime(ts_start) + toIntervalDay(30)"
    same = {"llm_requests": at_30, "llm_attempts": at_30}
    assert ttl_statements(SchemaOptions("logs", ttl_days=30), same) == []
    assert ttl_statements(SchemaOptions("logs", ttl_days=7), same) == [
        "ALTER TABLE `logs`.`llm_requests` MODIFY TTL toDateTime(ts_start) + INTERVAL 7 DAY",
        "ALTER TABLE `logs`.`llm_attempts` MODIFY TTL toDateTime(ts_start) + INTERVAL 7 DAY"]
    assert ttl_statements(SchemaOptions("logs"), {"llm_requests": at_30, "llm_attempts": ""}) == [
        "ALTER TABLE `logs`.`llm_requests` REMOVE TTL"]  # REMOVE TTL on a table without one is an error
    assert ttl_statements(SchemaOptions("logs", ttl_days=7), {"llm_requests": ""}) == [
        "ALTER TABLE `logs`.`llm_requests` MODIFY TTL toDateTime(ts_start) + INTERVAL 7 DAY"]  # absent: skipped
    # a TTL set by hand is replaced: the config is the authority
    assert len(ttl_statements(SchemaOptions("logs", ttl_days=30), {"llm_requests": at_30 + " DELETE WHERE 1"})) == 1
    cluster = SchemaOptions("logs", cluster="prod", ttl_days=7)
    assert ttl_statements(cluster, {"llm_requests_local": at_30, "llm_requests": at_30}) == [
        "ALTER TABLE `logs`.`llm_requests_local` ON CLUSTER `prod` MODIFY TTL toDateTime(ts_start) + INTERVAL 7 DAY"]
    assert ttl_query(cluster) == ("SELECT name, engine_full FROM system.tables WHERE database = 'logs' "
                                  "AND name IN ('llm_requests_local', 'llm_attempts_local')")
    assert "'it\\'s'" in ttl_query(SchemaOptions("it's"))


def test_version_8_ddl_on_one_server_and_a_cluster():
    v8 = {m.version: m for m in render(SchemaOptions("logs"))[1]}[8].statements
    assert "ALTER TABLE `logs`.`llm_requests` ADD COLUMN IF NOT EXISTS `cache_write_tokens` Nullable(UInt32) " \
           "AFTER `cached_tokens`" in v8
    assert "ALTER TABLE `logs`.`llm_requests` ADD INDEX IF NOT EXISTS `idx_session_id` session_id " \
           "TYPE bloom_filter(0.001) GRANULARITY 1" in v8
    assert "ALTER TABLE `logs`.`llm_attempts` MATERIALIZE INDEX `idx_request_id`" in v8
    assert "ALTER TABLE `logs`.`llm_feedback` MODIFY COLUMN `ts` DateTime64(3, 'UTC') CODEC(Delta, ZSTD)" in v8
    assert sum("MATERIALIZE INDEX" in s for s in v8) == 5 and sum("MODIFY COLUMN" in s for s in v8) == 5
    single = ddl_script(SchemaOptions("logs"))
    assert "`ts_start` DateTime64(3, 'UTC') CODEC(Delta, ZSTD)" in single
    assert "`first_seen` DateTime64(3, 'UTC') CODEC(Delta, ZSTD)" in single
    cluster = {m.version: m for m in render(SchemaOptions("logs", cluster="prod"))[1]}[8].statements
    # indexes, codecs and their builds go to the tables that store rows, never the Distributed ones
    for stmt in cluster:
        if "MATERIALIZE INDEX" in stmt or "MODIFY COLUMN" in stmt or "ADD INDEX" in stmt:
            assert "_local` ON CLUSTER `prod`" in stmt, stmt


def test_telemetry_owns_its_table_definitions():
    """No telemetry module imports from gateway.prompts (the prompt tables' columns live in
    telemetry/columns.py), and the old home of those columns is gone."""
    for path in sorted((REPO / "gateway" / "telemetry").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.startswith("gateway.prompts")], path
    assert not (REPO / "gateway" / "prompts" / "columns.py").exists()


def test_anthropic_cache_writes_reach_usage_and_the_row():
    usage = Usage.from_openai(translate_usage({"input_tokens": 10, "cache_creation_input_tokens": 2048,
                                               "cache_read_input_tokens": 100, "output_tokens": 5}))
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens) == (2158, 100, 2048)
    assert Usage.from_openai(translate_usage({"input_tokens": 3, "output_tokens": 1})).cache_write_tokens is None
    openai = Usage.from_openai({"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                                "prompt_tokens_details": {"cached_tokens": 4}})
    assert (openai.cached_tokens, openai.cache_write_tokens) == (4, None)

    builder = RowBuilder(config_hash="h", instance="i", prices=PriceTable(), tokens=TokenCounter())

    def ctx(**kw) -> RequestContext:
        return RequestContext(request_id="r", endpoint="chat/completions", t_start=1.0, ts_start=1e9, **kw)

    def row(c: RequestContext) -> dict:
        return dict(zip(REQUEST_COLUMN_NAMES, builder.request_row(c)))

    assert row(ctx(usage=usage))["cache_write_tokens"] == 2048
    assert row(ctx(usage=openai))["cache_write_tokens"] is None
    steps = [ctx(usage=usage), ctx(usage=openai), ctx(usage=Usage(prompt_tokens=1, completion_tokens=1,
                                                                   cache_write_tokens=10))]
    chain = row(ctx(chain_steps=steps))
    assert (chain["cache_write_tokens"], chain["cached_tokens"], chain["prompt_tokens"]) == (2058, 104, 2168)
    assert row(ctx(chain_steps=[ctx(usage=openai)]))["cache_write_tokens"] is None
