"""A bug on the request path (here: a translator made to raise, standing in for one) still
answers in the caller's protocol and leaves a row that says so: a 500 before the answer started,
an in-band error event once a stream is under way. Never aiohttp's plain-text 500, never a
stream that just stops."""

from __future__ import annotations

import anthropic
import httpx
import pytest

import gateway.inbound.anthropic as messages_inbound
from tests.support.gateway import gateway_config, serve
from tests.support.telemetry import chdb_dsn, tdb, telemetry_yaml  # noqa: F401
from tests.support.telemetry_rows import flush, select

USER = [{"role": "user", "content": "hello there"}]


def broken(*args, **kwargs):
    raise RuntimeError("a translator bug")


def test_a_bug_before_the_answer_is_a_500_in_the_callers_shape(monkeypatch, tmp_path, tdb):
    monkeypatch.setattr(messages_inbound, "to_message", broken)
    config = gateway_config("http://127.0.0.1:9/v1") + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "log")
    with serve(config) as gw:
        client = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
        with pytest.raises(anthropic.InternalServerError) as caught:
            client.messages.create(model="mock-gpt", max_tokens=20, messages=USER,
                                   extra_headers={"x-request-id": "bug-json"})
        body = caught.value.body
        assert body["type"] == "error" and body["error"]["type"] == "api_error"
        assert "RuntimeError" in body["error"]["message"] and "a translator bug" not in body["error"]["message"]
        chat = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "mock-gpt", "messages": USER})
        assert chat.status_code == 200  # the gateway goes on serving
        flush(gw)
    (row,) = select(tdb, "SELECT status_code, error_type FROM llm_requests WHERE client_request_id = 'bug-json'")
    assert row["status_code"] == 500 and row["error_type"]


def test_a_bug_mid_stream_ends_it_with_an_error_event(monkeypatch, tmp_path, tdb):
    feed = messages_inbound.MessagesEncoder.feed
    calls = []

    def feed_then_break(self, data):
        calls.append(1)
        return feed(self, data) if len(calls) < 3 else broken()

    monkeypatch.setattr(messages_inbound.MessagesEncoder, "feed", feed_then_break)
    config = gateway_config("http://127.0.0.1:9/v1") + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "log")
    with serve(config) as gw:
        with httpx.stream("POST", f"{gw.url}/v1/messages", headers={"x-request-id": "bug-stream"},
                          json={"model": "mock-gpt", "max_tokens": 20, "messages": USER, "stream": True}) as r:
            assert r.status_code == 200
            text = r.read().decode()
        assert text.startswith("event: message_start") and "event: content_block_delta" in text
        assert text.rstrip().split("\n\n")[-1].startswith("event: error") and '"api_error"' in text
        flush(gw)
    (row,) = select(tdb, "SELECT status_code, error_type FROM llm_requests WHERE client_request_id = 'bug-stream'")
    assert row["status_code"] == 500 and row["error_type"]
