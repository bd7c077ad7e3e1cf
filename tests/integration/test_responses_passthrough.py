"""``/v1/responses`` passed through to a backend that speaks it: the answer is relayed byte for
byte, and the row has what the backend reported — tokens (cached and reasoning included), cost,
TTFT and inter-token times — from the JSON body or the stream's ``response.completed``."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import serve
from tests.support.responses import USAGE, response_events, response_object
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml, wait_for  # noqa: F401
from tests.support.telemetry_rows import flush, select

# Built-in price of gpt-4o (USD per 1M tokens): input 2.50, cached input 1.25, output 10.
COST = ((20 - 8) * 2.50 + 8 * 1.25 + 12 * 10.0) / 1e6


@pytest.fixture
def setup(tmp_path, tdb):
    with FakeUpstream() as upstream:
        text = f"""
backends:
  native: {{type: openai, base_url: "{upstream.url}", api_key: sk-backend-secret}}
models:
  gpt-4o: {{targets: [{{backend: native}}]}}
""" + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "log")
        with serve(text) as srv:
            yield srv, upstream


def _rows(srv, tdb, n: int) -> dict[str, dict]:
    wait_for(lambda: httpx.get(f"{srv.url}/admin/telemetry").json()["written"] == n, what=f"{n} records")
    flush(srv)
    return {r["client_request_id"]: r for r in select(tdb, "SELECT * FROM llm_requests")}


def test_json_and_stream_relayed_unchanged_with_usage_in_the_row(setup, tdb):
    srv, upstream = setup
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-client", max_retries=0)
    body = orjson.dumps(response_object("Hello there"))
    upstream.json(body, times=1)
    raw = client.responses.with_raw_response.create(model="gpt-4o", input="Say hello",
                                                    extra_headers={"x-request-id": "json"})
    assert raw.http_response.content == body
    assert raw.parse().output_text == "Hello there"
    assert upstream.last.path == "/v1/responses" and upstream.last.json() == {"model": "gpt-4o", "input": "Say hello"}

    events = response_events(["Hel", "lo", " there"])
    upstream.sse(events, chunk_delay_s=0.01, times=1)
    with httpx.stream("POST", f"{srv.url}/v1/responses", headers={"x-request-id": "raw-stream"},
                      json={"model": "gpt-4o", "input": "Say hello", "stream": True}) as resp:
        assert resp.read() == b"".join(events)
    upstream.sse(events, times=1)
    streamed = list(client.responses.create(model="gpt-4o", input="Say hello", stream=True,
                                            extra_headers={"x-request-id": "sdk-stream"}))
    assert streamed[-1].type == "response.completed" and streamed[-1].response.output_text == "Hello there"

    rows = _rows(srv, tdb, 3)
    for name in ("json", "raw-stream", "sdk-stream"):
        row = rows[name]
        assert (row["endpoint"], row["status_code"], row["truncated"], row["finish_reason"]) == \
            ("responses", 200, False, "stop"), name
        assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (20, 12, 32), name
        assert (row["cached_tokens"], row["reasoning_tokens"], row["tokens_estimated"]) == (8, 5, 0), name
        assert row["model_served"] == "gpt-4o-2024-08-06" and row["cost_usd"] == pytest.approx(COST), name
        assert 0 < row["ttft_ms"] <= row["latency_ms"], name
    assert rows["json"]["stream"] is False and rows["raw-stream"]["stream"] is True
    # three text deltas, 10 ms apart upstream: two inter-token gaps
    assert 0 < rows["raw-stream"]["itl_p50_ms"] <= rows["raw-stream"]["itl_max_ms"] < rows["raw-stream"]["latency_ms"]
    assert rows["raw-stream"]["ttft_ms"] < rows["raw-stream"]["latency_ms"]


def test_a_stream_cut_before_its_end_event_gets_an_error_event(setup, tdb):
    srv, upstream = setup
    events = response_events(["Hel", "lo"])
    upstream.sse(events[:-3], times=1)  # no content_part.done, output_item.done, response.completed
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-client", max_retries=0)
    got = list(client.responses.create(model="gpt-4o", input="Say hello", stream=True,
                                       extra_headers={"x-request-id": "cut"}))
    error, failed = got[-2:]  # the gateway tells the client in-band: an error, and the response failed
    assert error.type == "error" and error.code == "stream_truncated" and failed.type == "response.failed"
    assert error.sequence_number == got[-3].sequence_number + 1 == failed.sequence_number - 1
    assert failed.response.id == "resp_abc" and failed.response.status == "failed"
    usage_free = dict(USAGE)
    del usage_free["input_tokens_details"]
    upstream.sse(response_events(["x"], usage=usage_free)[:2] + [
        b'event: response.failed\ndata: {"type":"response.failed","sequence_number":2,"response":'
        + orjson.dumps({**response_object("", status="failed"),
                        "error": {"code": "server_error", "message": "sk-backend-secret broke"}}) + b"}\n\n"],
                 times=1)
    with httpx.stream("POST", f"{srv.url}/v1/responses", headers={"x-request-id": "failed"},
                      json={"model": "gpt-4o", "input": "x", "stream": True}) as resp:
        text = resp.read()
    assert b"sk-backend-secret" not in text and text.count(b"response.failed") == 2  # no event added
    rows = _rows(srv, tdb, 2)
    assert (rows["cut"]["status_code"], rows["cut"]["error_type"], rows["cut"]["truncated"]) == \
        (502, "stream_truncated", True)
    assert (rows["failed"]["status_code"], rows["failed"]["error_type"]) == (502, "upstream_stream_error")
    assert "sk-backend-secret" not in rows["failed"]["error_message"]


def test_an_answer_without_usage_is_estimated_from_the_request_and_the_text(setup, tdb):
    from gateway.core.tokens import TokenCounter

    srv, upstream = setup
    upstream.json(response_object("Hello there", usage=None), times=1)
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-client", max_retries=0)
    client.responses.create(model="gpt-4o", instructions="Be brief.", extra_headers={"x-request-id": "no-usage"},
                            input=[{"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]}])
    (row,) = _rows(srv, tdb, 1).values()
    tokens = TokenCounter()
    prompt = tokens.count_chat([{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": [{"type": "text", "text": "Say hello"}]}], "gpt-4o")
    assert (row["tokens_estimated"], row["prompt_tokens"], row["completion_tokens"]) == \
        (1, prompt, tokens.count_text("Hello there", "gpt-4o"))
    assert row["cost_usd"] > 0
    assert "Be brief" not in row["params"]  # the instructions are the prompt, not a setting
