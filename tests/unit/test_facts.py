"""The facts record (gateway.telemetry.facts): every field a row uses survives encode/decode, no
secret reaches it, what cannot be stored is repaired and flagged, and the batch splitter
isolates refused rows."""

from __future__ import annotations

import uuid

import orjson
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.config.telemetry import BodyLogging
from gateway.core import outcome
from gateway.core.context import Attempt, RequestContext, Usage
from gateway.core.pricing import PriceTable
from gateway.core.request_body import client_body
from gateway.core.tokens import TokenCounter
from gateway.prompts.tables import feedback_row
from gateway.telemetry.columns import REQUEST_COLUMN_NAMES
from gateway.telemetry.facts import RequestFacts, TableRow, decode, encode_request, encode_table_row
from gateway.telemetry.facts_encode import BODY_MAX, JSON_MAX
from gateway.telemetry.facts_insert import insert_isolating, insert_rows
from gateway.telemetry.log.framing import MAX_PAYLOAD
from gateway.telemetry.record import RowBuilder
from gateway.telemetry.scrub import key_fingerprint
from gateway.telemetry.values import encode_rows
from tests.support.telemetry_facts import assert_same_rows

TOKENS = TokenCounter()
KEY = "sk-live-0123456789secret"


def _builder(**bodies) -> RowBuilder:
    return RowBuilder(config_hash="cfg", instance="host", prices=PriceTable(), tokens=TOKENS,
                      bodies=BodyLogging(**bodies) if bodies else None)


def _headers(**extra: str) -> CIMultiDictProxy:
    return CIMultiDictProxy(CIMultiDict({"Authorization": f"Bearer {KEY}", "User-Agent": "sdk/1", **extra}))


def _ctx(**kw) -> RequestContext:
    raw = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello world"}],
                        "temperature": 0.2, "user": "u-1", "metadata": {"team": "body"}, "tools": [{"type": "x"}]})
    base = dict(request_id=str(uuid.uuid4()), endpoint="chat/completions", t_start=100.0, ts_start=1_700_000_000.123,
                body=client_body(orjson.loads(raw), raw), model_requested="gpt-4o", status_code=200,
                t_upstream_start=100.01, t_first_token=100.05, t_end=100.2, headers=_headers())
    base.update(kw)
    return RequestContext(**base)


def _full_ctx() -> RequestContext:
    """A context with every field the row reads set to something other than its default."""
    step_raw = b'{"model":"gpt-4o","messages":[{"role":"user","content":"step one"}]}'
    step = _ctx(body=client_body(orjson.loads(step_raw), step_raw), usage=Usage(), completion_text=["a step"],
                upstream_model="gpt-4o", model_served="gpt-4o-2024-08-06")
    step_with_usage = _ctx(usage=Usage(7, 3, 10, 2, 1, 3), model_served="gpt-4o-mini")
    return _ctx(
        client_request_id="client-7", stream=True, client_ip="10.0.0.9", user_agent="sdk/1", backend="openai",
        provider="openai", upstream_model="gpt-4o", model_served="gpt-4o-2024-08-06", attempts=2,
        status_code=502, error_type="upstream_http_error", error_message=f"boom: Incorrect key {KEY}",
        finish_reason="length", truncated=True, usage=Usage(100, 40, 140, 20, 5, 8), config_hash="h-1",
        tenant="acme", api_key_id="", metadata={"stage": "s", "team": "stage"}, prompt_id="outline",
        prompt_version=3, prompt_label="production", experiment_arm="production:3", route_rule="big",
        strategy="ordered", route_candidates=[{"target": "openai", "score": 0.5, "skipped": ""},
                                              {"target": "vllm", "score": None, "skipped": "circuit_open"}],
        cache_status="miss", cache_saved_ms=12.5, trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        session_id="", parent_request_id="",
        attempt_log=[Attempt("vllm", "vllm", "m1", 100.011, 100.02, None, 503, "5xx"),
                     Attempt("openai", "openai", "gpt-4o", 100.03, 100.2, 100.05, 200, "", backoff_ms=9.5, span_id=7)],
        chunk_times=[100.05 + 0.01 * k + (k % 3) * 1e-4 for k in range(20)], completion_text=["Hé", "llo", " 😀"],
        response_body=b'{"id":"chatcmpl-1"}', chain_steps=[step, step_with_usage],
        headers=_headers(**{"x-gateway-metadata": "team=header,k=v", "traceparent":
                            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                            "x-gateway-session-id": "sess-1", "x-gateway-parent-request-id":
                            "0F8FAD5B-D9CB-469F-A165-70867728950E"}))


# --- round trip ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bodies", [{}, {"request": True, "response": True}])
def test_every_field_the_row_uses_round_trips(bodies):
    ctx = _full_ctx()
    assert_same_rows(_builder(**bodies), ctx)
    facts = decode(encode_request(ctx, keep_text=True))
    assert isinstance(facts, RequestFacts)
    for name in ("request_id", "client_request_id", "t_start", "ts_start", "t_end", "t_first_token",
                 "t_upstream_start", "usage", "attempt_log", "chunk_times", "route_candidates", "metadata",
                 "prompt_version", "cache_saved_ms", "response_body", "error_message", "truncated"):
        assert getattr(facts, name) == getattr(ctx, name), name
    assert facts.completion_text == ["Héllo 😀"] and facts.body == ctx.body and facts.body.raw == ctx.body.raw
    assert len(facts.chain_steps) == 2 and facts.chain_steps[0].completion_text == ["a step"]
    assert facts.billable is True and facts.flags == []  # cut off after producing text: billed


def test_other_shapes_round_trip():
    builder = _builder(request=True, response=True)
    cases = [
        _ctx(body=None, headers=None, status_code=404, error_type="model_not_found", t_upstream_start=None),
        _ctx(body={"model": "m", "prompt": "plain dict body"}, endpoint="completions", completion_text=["x"]),
        _ctx(status_code=0, truncated=True, completion_text=["partial"], stream=True, chunk_times=[100.05]),
        _ctx(cache_status="hit", cache_saved_ms=80.0, t_upstream_start=None, response_body=b"{}"),
        _ctx(api_key_id="vk-acme-1", usage=Usage(prompt_tokens=5), request_id="not-a-uuid"),
    ]
    outcome.conclude(cases[2])
    for ctx in cases:
        assert_same_rows(builder, ctx)


def test_the_answer_is_kept_only_when_needed():
    with_usage = _ctx(usage=Usage(5, 2, 7), completion_text=["the answer text"], response_body=b'{"answer": 1}')
    lean = encode_request(with_usage, keep_text=False)
    assert b"the answer text" not in lean and b'"answer"' not in lean
    facts = decode(lean)
    assert facts.completion_text == [] and facts.response_body is None
    assert_same_rows(_builder(), with_usage, lean)  # the row needs neither when usage came back
    no_usage = _ctx(completion_text=["counted words"])
    facts = decode(encode_request(no_usage, keep_text=False))
    assert facts.completion_text == ["counted words"]  # the completion's tokens are estimated from it
    assert_same_rows(_builder(), no_usage)


# --- secrets -------------------------------------------------------------------------------------
def test_no_credential_reaches_the_record():
    secrets = {"Authorization": f"Bearer {KEY}", "api-key": "azure-secret-key-1", "x-api-key": "anthropic-secret-2",
               "Cookie": "session=cookie-secret-3", "Proxy-Authorization": "Basic proxy-secret-4"}
    ctx = _full_ctx()
    ctx.headers = CIMultiDictProxy(CIMultiDict({**secrets, "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}))
    ctx.error_message = "upstream said no"
    payload = encode_request(ctx, keep_text=True)
    for value in secrets.values():
        assert value.split()[-1].split("=")[-1].encode() not in payload
    facts = decode(payload)
    assert facts.api_key_id == key_fingerprint(ctx.headers) and facts.api_key_id.startswith("key-")
    assert set(facts.headers) == {"traceparent"}
    ctx.api_key_id = "vk-team-a"  # the access stage's id wins over a fingerprint
    assert decode(encode_request(ctx, keep_text=False)).api_key_id == "vk-team-a"


# --- poison --------------------------------------------------------------------------------------
def test_lone_surrogates_become_replacement_characters_and_are_flagged():
    bad = "bad \ud800 text"
    ctx = _ctx(metadata={"k": bad}, error_message=bad, error_type="upstream_http_error", status_code=500,
               completion_text=["answer \udcff"], body={"model": "gpt-4o", "messages": [], "user": bad},
               headers=_headers(**{"x-gateway-session-id": "sess\udcfe"}))
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(ctx.metadata)  # what would fail a plain encoder
    payload = encode_request(ctx, keep_text=True)
    facts = decode(payload)
    assert facts.metadata == {"k": "bad \ufffd text"} and facts.error_message == "bad \ufffd text"
    assert facts.completion_text == ["answer \ufffd"] and facts.body["user"] == "bad \ufffd text"
    assert facts.headers["x-gateway-session-id"] == "sess\ufffd"
    row = dict(zip(REQUEST_COLUMN_NAMES, _builder().request_row(facts)))
    assert row["user"] == "bad \ufffd text" and row["session_id"] == "sess\ufffd"
    assert set(row["row_flags"]) == {"sanitized:metadata", "sanitized:error_message", "sanitized:completion_text",
                                     "sanitized:request_body", "sanitized:headers"}
    encode_rows([list(row.values())]).decode()  # valid UTF-8 all the way


def test_oversized_fields_are_cut_and_flagged():
    big = "x" * (2 << 20)
    raw = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": big}], "temperature": 0.7,
                        "user": "u-9", "metadata": {"team": "t"}})
    ctx = _ctx(body=client_body(orjson.loads(raw), raw), error_message="E" * (2 << 20), completion_text=[big],
               response_body=big.encode(), metadata={"huge": big})
    payload = encode_request(ctx, keep_text=True)
    assert len(payload) < 3.5 * (1 << 20)  # body, answer and text 1 MiB each at most; the JSON far less
    facts = decode(payload)
    assert len(facts.body.raw) == BODY_MAX and facts.body_size == len(raw)
    row = dict(zip(REQUEST_COLUMN_NAMES, _builder(request=True, response=True, max_bytes=100).request_row(facts)))
    assert row["params"] == '{"temperature":0.7}' and row["user"] == "u-9"
    assert row["metadata"]["team"] == "t" and len(row["metadata"]["huge"]) == 1024
    assert row["tokens_estimated"] == 1 and row["prompt_tokens"] == (len(raw) + 3) // 4
    assert row["request_body"].startswith('{"model":"gpt-4o"') and len(row["response_body"]) == 100
    assert set(row["row_flags"]) == {"truncated:request_body", "truncated:response_body",
                                     "truncated:completion_text", "truncated:error_message", "truncated:metadata"}


def test_a_record_always_fits_however_large_its_fields():
    nested = [[["z" * 2000] * 64] * 64]  # 8 MB of JSON, still 4 MB once each string and list is cut
    ctx = _ctx(metadata={f"k{i}": "v" * 60_000 for i in range(300)}, route_candidates=nested,
               error_message="e" * 100_000, client_request_id="c" * 5000)
    payload = encode_request(ctx, keep_text=False)
    assert len(payload) < JSON_MAX + len(ctx.body.raw) + 64
    facts = decode(payload)
    assert facts.route_candidates is None and len(facts.metadata) == 64
    assert facts.error_message == "e" * 1024 and facts.request_id == ctx.request_id and facts.t_end == ctx.t_end
    row = dict(zip(REQUEST_COLUMN_NAMES, _builder().request_row(facts)))
    assert row["route_candidates"] == "" and row["latency_ms"] == pytest.approx(200.0)
    assert {"truncated:route_candidates", "truncated:metadata", "truncated:error_message",
            "truncated:client_request_id"} <= set(row["row_flags"])


def test_a_chains_steps_are_bounded():
    raw = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "s" * 900_000}]})
    steps = [_ctx(body=client_body(orjson.loads(raw), raw), usage=Usage(10, 1, 11)) for _ in range(30)]
    payload = encode_request(_ctx(chain_steps=steps, usage=Usage(300, 30, 330)), keep_text=False)
    assert len(payload) < MAX_PAYLOAD and len(payload) <= (16 << 20) + len(raw)
    facts = decode(payload)
    assert 10 <= len(facts.chain_steps) < 30 and facts.flags == ["truncated:chain_steps"]


def test_an_upstreams_invalid_utf8_is_replaced_and_flagged():
    ctx = _ctx(usage=Usage(1, 1, 2), response_body=b'{"text": "caf\xe9 \xff"}')
    row = dict(zip(REQUEST_COLUMN_NAMES, _builder(response=True).request_row(decode(encode_request(ctx, keep_text=True)))))
    assert row["response_body"] == '{"text": "caf\ufffd \ufffd"}' and row["row_flags"] == ["sanitized:response_body"]


def test_table_rows_round_trip_and_are_sanitised():
    table, columns, row = feedback_row(str(uuid.uuid4()), 1_700_000_000.5, str(uuid.uuid4()), "c-1", 0.5, "good",
                                       "fine \ud800", "acme", "key-1")
    back = decode(encode_table_row(table, columns, row))
    assert back == TableRow(table, columns, [*row[:6], "fine \ufffd", *row[7:]])


def test_unknown_records_are_refused():
    payload = encode_request(_ctx(), keep_text=False)
    for bad in (b"R\x09" + payload[2:], b"Q" + payload[1:], payload[:-3], b"R"):
        with pytest.raises(ValueError):
            decode(bad)


# --- isolating refused rows ----------------------------------------------------------------------
class DataError(Exception):
    code = 27  # CANNOT_PARSE_INPUT_ASSERTION_FAILED


def test_a_refused_batch_is_split_to_its_bad_rows_with_stable_tokens():
    calls: list[tuple[str, int]] = []
    stored: dict[str, list] = {}

    def insert(rows, token):
        calls.append((token, len(rows)))
        if any(r[0] == "bad" for r in rows):
            raise DataError("Code: 27. cannot parse")
        stored.setdefault(token, rows)

    rows = [["ok", i] for i in range(100)]
    rows[13][0] = rows[71][0] = "bad"
    result = insert_isolating(insert, rows, "w1:seg:0-100")
    assert result.inserted == 98 and result.rejected == [13, 71] and "Code: 27" in result.errors[0]
    assert result.calls == len(calls) <= 2 * 2 * 7 + 1
    assert sum(len(v) for v in stored.values()) == 98
    first = [c[0] for c in calls]
    calls.clear()
    insert_isolating(insert, rows, "w1:seg:0-100")
    assert [c[0] for c in calls] == first  # the same split and tokens on a retry: deduplicated

    def down(rows, token):
        raise ConnectionRefusedError("store down")

    with pytest.raises(ConnectionRefusedError):
        insert_isolating(down, rows, "t")  # not a refusal: retried whole later, never split


def test_refused_rows_get_stand_ins_and_a_schema_that_fits_nothing_raises():
    builder = _builder()
    good = [builder.request_row(_ctx()) for _ in range(5)]
    bad = builder.request_row(_ctx(request_id="0f8fad5b-d9cb-469f-a165-70867728950e", status_code=503,
                                   backend="b1", tenant="acme"))
    bad[REQUEST_COLUMN_NAMES.index("prompt_version")] = -1
    inserted: list[list] = []

    def insert(rows, token):
        if any(r[REQUEST_COLUMN_NAMES.index("prompt_version")] == -1 for r in rows):
            raise DataError("Code: 72. Unsigned type must not contain '-' symbol")
        inserted.extend(rows)

    result = insert_rows(insert, [*good[:3], bad, *good[3:]], "tok", builder.rejected_row)
    assert (result.inserted, result.stand_ins, result.lost) == (5, 1, 0)
    stand_in = dict(zip(REQUEST_COLUMN_NAMES, inserted[-1]))
    assert stand_in["request_id"] == "0f8fad5b-d9cb-469f-a165-70867728950e" and stand_in["row_flags"] == ["rejected"]
    assert (stand_in["status_code"], stand_in["backend"], stand_in["tenant"]) == (503, "b1", "acme")
    assert stand_in["error_type"] == "telemetry_row_rejected" and "Code: 72" in stand_in["error_message"]
    assert stand_in["ts_start"] == bad[REQUEST_COLUMN_NAMES.index("ts_start")]

    def refuse_all(rows, token):
        raise DataError("Code: 27. nothing fits")

    with pytest.raises(RuntimeError, match="refused every row"):
        insert_rows(refuse_all, good, "tok", builder.rejected_row)
