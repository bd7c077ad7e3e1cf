"""Facts records from a real gateway: every kind of request (JSON, streams, errors, retries, a
cache hit, a chain and its steps) gives the same rows through its record as from its live
context; poison records among a thousand all become rows in real chDB; a row the store refuses
is isolated and stood in for."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from gateway.app import FINISHERS, build_app
from gateway.config import load_config
from gateway.config.telemetry import BodyLogging, ClickHouseSettings
from gateway.core.context import RequestContext, Usage
from gateway.core.pricing import PriceTable
from gateway.core.request_body import client_body
from gateway.core.tokens import TokenCounter
from gateway.proxy.server import BackgroundServer
from gateway.telemetry.clickhouse import ClickHouseStore
from gateway.telemetry.columns import ATTEMPT_COLUMN_NAMES, REQUEST_COLUMN_NAMES
from gateway.telemetry.facts import RequestFacts, decode, encode_request
from gateway.telemetry.facts_insert import insert_rows
from gateway.telemetry.record import RowBuilder
from gateway.telemetry.values import encode_rows
from tests.support.fake_upstream import FakeUpstream, chat_chunk, sse_event
from tests.support.polling import wait_for
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb  # noqa: F401
from tests.support.telemetry_facts import assert_same_rows
from tests.support.telemetry_rows import select

TOKENS = TokenCounter()
PROMPT = """
versions:
  - version: 1
    variables: [{name: question, type: string}]
    messages:
      - {role: user, content: "Think about: {{ question }}"}
labels: {production: 1}
"""
CHAIN = """
description: two steps
version: 1
deadline_s: 30
steps:
  - {name: outline, prompt: think@production, model: gpt-test}
  - {name: answer, prompt: think@1, model: gpt-test, include_messages: true}
"""
USAGE = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}


def _completion(content: str, usage: dict | None = USAGE) -> dict:
    out = {"id": "chatcmpl-f", "object": "chat.completion", "created": 1, "model": "up-model",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}
    if usage:
        out["usage"] = usage
    return out


def _stream(usage: dict | None) -> list[bytes]:
    events = [sse_event(chat_chunk(role=True))]
    events += [sse_event(chat_chunk(f"w{k} ")) for k in range(20)]
    events.append(sse_event(chat_chunk(finish="stop")))
    if usage:
        events.append(sse_event(chat_chunk(choices=False, usage=usage)))
    return events + [b"data: [DONE]\n\n"]


@pytest.fixture
def recorded(tmp_path: Path):
    """A gateway (fake upstream; retries, a cache, a chain) whose finished requests are kept with
    their records, encoded when each request ended."""
    with FakeUpstream() as upstream:
        (tmp_path / "prompts").mkdir()
        (tmp_path / "chains").mkdir()
        (tmp_path / "prompts" / "think.yaml").write_text(PROMPT)
        (tmp_path / "chains" / "research.yaml").write_text(CHAIN)
        path = tmp_path / "gateway.yaml"
        path.write_text(f"""
server: {{reload_interval_s: 0}}
telemetry: {{enabled: false}}
backends:
  fake: {{type: openai, base_url: "{upstream.url}", api_key: sk-backend-secret}}
models:
  gpt-test:
    targets: [{{backend: fake, model: up-model}}]
  retried:
    targets: [{{backend: fake, model: up-model}}]
    retry: {{attempts: 2, base_backoff_ms: 1}}
  research:
    chain: research
routing:
  retry: {{attempts: 1}}
cache: {{enabled: true, store: memory, namespace: facts-{uuid.uuid4().hex[:8]}}}
""")
        app = build_app(load_config(path))
        records: list[tuple[RequestContext, bytes]] = []
        app[FINISHERS].append(lambda ctx: records.append((ctx, encode_request(ctx, keep_text=True))))
        with BackgroundServer(app) as srv:
            yield srv, upstream, records


def test_rows_through_the_record_equal_rows_from_the_live_context(recorded):
    srv, upstream, records = recorded
    headers = {"Authorization": "Bearer sk-client-secret-abc", "x-gateway-metadata": "team=search,k=v",
               "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
               "x-gateway-session-id": "sess-9", "x-gateway-parent-request-id": str(uuid.uuid4()),
               "x-request-id": "client-req-1"}

    def post(body: dict, **kw) -> httpx.Response:
        return httpx.post(f"{srv.url}/v1/chat/completions", json=body, headers=headers, timeout=30, **kw)

    chat = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello there"}], "user": "u-1",
            "metadata": {"feature": "facts"}, "max_tokens": 20}
    upstream.json(_completion("With usage."), times=1)
    assert post(chat).status_code == 200
    upstream.json(_completion("No usage came back.", usage=None), times=1)
    assert post(chat).status_code == 200
    upstream.sse(_stream(USAGE), times=1)
    assert post({**chat, "stream": True}).status_code == 200
    upstream.sse(_stream(None), chunk_delay_s=0.001, times=1)
    assert post({**chat, "stream": True}).status_code == 200
    upstream.json({"error": {"message": "overloaded, key sk-backend-secret"}}, status=500, times=1)
    assert post(chat).status_code == 500
    upstream.json({"error": {"message": "busy"}}, status=503, times=1)
    upstream.json(_completion("Second try."), times=1)
    assert post({**chat, "model": "retried"}).status_code == 200
    upstream.json(_completion("Cached answer."), times=1)
    cached = {**chat, "temperature": 0}
    assert post(cached).status_code == 200 and post(cached).status_code == 200
    upstream.json(_completion("An outline."), times=1)
    upstream.json(_completion("The answer.", usage=None), times=1)
    assert post({"model": "research", "messages": [{"role": "user", "content": "Which?"}],
                 "variables": {"question": "Which kettle?"}}).status_code == 200
    assert post({**chat, "model": "no-such-model"}).status_code == 404

    wait_for(lambda: len(records) == 12, what="12 finished requests (2 of them chain steps)")
    kinds = {(c.model_requested, c.stream, c.status_code, c.cache_status) for c, _ in records}
    assert ("gpt-test", False, 200, "hit") in kinds and ("gpt-test", False, 500, "bypass") in kinds
    chain = next(c for c, _ in records if c.chain_steps)
    assert len(chain.chain_steps) == 2 and chain.chain_steps[1].usage.prompt_tokens is None
    assert any(c.attempt_log and len(c.attempt_log) == 2 for c, _ in records)
    assert any(len(c.chunk_times) >= 20 for c, _ in records)

    with_bodies = RowBuilder(config_hash="cfg", instance="i", prices=PriceTable(), tokens=TOKENS,
                             bodies=BodyLogging(request=True, response=True))
    plain = RowBuilder(config_hash="cfg", instance="i", prices=PriceTable(), tokens=TOKENS)
    for ctx, payload in records:
        assert b"sk-client-secret-abc" not in payload and b"sk-backend-secret" not in payload
        assert_same_rows(with_bodies, ctx, payload)
        assert_same_rows(plain, ctx, encode_request(ctx, keep_text=False))  # the lean record the log keeps


def _ctx(i: int, **kw) -> RequestContext:
    raw = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": f"question {i}"}]})
    base = dict(request_id=str(uuid.uuid4()), endpoint="chat/completions", t_start=10.0, ts_start=time.time(),
                body=client_body(orjson.loads(raw), raw), model_requested="gpt-4o", backend="openai",
                upstream_model="gpt-4o", status_code=200, usage=Usage(10, 5, 15), t_upstream_start=10.001,
                t_first_token=10.05, t_end=10.1, tenant="acme")
    base.update(kw)
    return RequestContext(**base)


def _store(database: str) -> tuple[ClickHouseStore, object, object]:
    store = ClickHouseStore(ClickHouseSettings(database=database), chdb_dsn())

    def requests(rows, token):
        store.insert("llm_requests", REQUEST_COLUMN_NAMES, encode_rows(rows), f"{token}:llm_requests")

    def attempts(rows, token):
        store.insert("llm_attempts", ATTEMPT_COLUMN_NAMES, encode_rows(rows), f"{token}:llm_attempts")

    return store, requests, attempts


def test_a_lone_surrogate_and_a_2mb_body_among_a_thousand_make_1001_rows(tdb):
    contexts = [_ctx(i) for i in range(999)]
    huge = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "y" * (2 << 20)}],
                         "user": "big-user"})
    contexts.insert(300, _ctx(-1, body=client_body(orjson.loads(huge), huge), usage=Usage(), completion_text=["ok"],
                              user_agent="big"))
    contexts.insert(600, _ctx(-2, metadata={"note": "lone \ud800 surrogate"}, user_agent="bad\udcff agent",
                              error_message="upstream \udc80 text"))
    builder = RowBuilder(config_hash="cfg", instance="i", prices=PriceTable(), tokens=TOKENS,
                         bodies=BodyLogging(request=True))
    records = [encode_request(c, keep_text=False) for c in contexts]  # what the serving process logs
    requests, attempts = [], []
    for payload in records:  # what the ingester does with them
        facts = decode(payload)
        assert isinstance(facts, RequestFacts)
        row = builder.request_row(facts)
        requests.append(row)
        attempts.extend(builder.attempt_rows(facts, row[0]))
    store, insert_requests, insert_attempts = _store(tdb)
    try:
        done = insert_rows(insert_requests, requests, "w:0:0-1001", builder.rejected_row)
        assert (done.inserted, done.stand_ins, done.lost) == (1001, 0, 0)
        assert insert_rows(insert_attempts, attempts, "w:0:0-1001").inserted == 1001
    finally:
        store.close()
    assert select(tdb, "SELECT count() AS n FROM llm_requests") == [{"n": 1001}]
    flagged = select(tdb, "SELECT user_agent, row_flags, metadata, error_message, length(request_body) AS body, "
                          "prompt_tokens, tokens_estimated FROM llm_requests WHERE notEmpty(row_flags) "
                          "ORDER BY user_agent")
    assert [r["user_agent"] for r in flagged] == ["bad\ufffd agent", "big"]
    bad, big = flagged
    assert bad["metadata"] == {"note": "lone \ufffd surrogate"} and bad["error_message"] == "upstream \ufffd text"
    assert set(bad["row_flags"]) == {"sanitized:metadata", "sanitized:user_agent", "sanitized:error_message"}
    assert big["row_flags"] == ["truncated:request_body"] and big["body"] == 64 * 1024
    assert big["tokens_estimated"] == 1 and big["prompt_tokens"] == (len(huge) + 3) // 4


def test_rows_the_store_refuses_are_isolated_and_stood_in_once(tdb):
    builder = RowBuilder(config_hash="cfg", instance="i", prices=PriceTable(), tokens=TOKENS)
    rows = [builder.request_row(_ctx(i)) for i in range(200)]
    rows[17][REQUEST_COLUMN_NAMES.index("request_id")] = "not-a-uuid"  # rows no encoder would make
    rows[150][REQUEST_COLUMN_NAMES.index("prompt_version")] = -5
    store, insert_requests, _ = _store(tdb)
    try:
        first = insert_rows(insert_requests, rows, "w:1:0-200", builder.rejected_row)
        again = insert_rows(insert_requests, rows, "w:1:0-200", builder.rejected_row)  # a retry after a crash
    finally:
        store.close()
    assert (first.inserted, first.stand_ins, first.lost) == (198, 2, 0)
    assert (again.inserted, again.stand_ins) == (198, 2)
    assert "CANNOT_PARSE_UUID" in first.errors[0] or "UUID" in first.errors[0]
    assert select(tdb, "SELECT count() AS n, uniqExact(request_id) AS u FROM llm_requests") == [{"n": 200, "u": 200}]
    stand_ins = select(tdb, "SELECT client_request_id, row_flags, error_type, tenant, status_code FROM llm_requests "
                            "WHERE has(row_flags, 'rejected') ORDER BY client_request_id")
    assert [(r["client_request_id"], r["error_type"], r["tenant"], r["status_code"]) for r in stand_ins] == \
        [("", "telemetry_row_rejected", "acme", 200), ("not-a-uuid", "telemetry_row_rejected", "acme", 200)]
