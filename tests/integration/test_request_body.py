"""``RequestBody``: the client's bytes are forwarded only while nothing changed the body; a
stage's change — in place and announced, or a new dict put on the context — or a plugin's
``modify`` verdict is re-encoded for the upstream and logged as changed."""

from __future__ import annotations

from types import SimpleNamespace

import httpx
import orjson

from gateway.core.request_body import RequestBody, client_body, logged_bytes, mark_mutated
from tests.support.gateway import gateway_config

# Spacing and key order no encoder would produce: only the client's own bytes look like this.
RAW = b'{ "messages" : [{"role":"user","content":"hi"}],  "model":"same-name" }'
CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "same-name",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


def target(model: str, needs_raw: bool = True) -> SimpleNamespace:
    return SimpleNamespace(upstream_model=model, client=SimpleNamespace(needs_raw=needs_raw))


def test_an_unchanged_body_is_the_clients_bytes_for_its_own_model():
    body = client_body(orjson.loads(RAW), RAW)
    assert body == orjson.loads(RAW) and isinstance(body, dict) and not body.changed
    sent, data = body.for_target(target("same-name"))
    assert sent is RAW and data is body  # no encoding, no copy
    sent, data = body.for_target(target("other"))  # another name upstream: re-encoded with it
    assert orjson.loads(sent) == {**orjson.loads(RAW), "model": "other"} and body["model"] == "same-name"
    assert body.encode_for("other", needs_raw=False)[1]["model"] == "other"
    assert logged_bytes(body) is RAW


def test_changes_are_re_encoded_and_logged_as_changed():
    body = client_body(orjson.loads(RAW), RAW)
    body["temperature"] = 0
    mark_mutated(body)
    sent, _ = body.for_target(target("same-name"))
    assert body.changed and orjson.loads(sent)["temperature"] == 0
    assert orjson.loads(logged_bytes(body))["temperature"] == 0

    # The gateway's own addition for the upstream: re-encoded, but the client's request is logged.
    body = client_body(orjson.loads(RAW), RAW)
    body["stream_options"] = {"include_usage": True}
    body.reencode()
    assert "stream_options" in orjson.loads(body.for_target(target("same-name"))[0])
    assert not body.changed and logged_bytes(body) is RAW

    # A plain dict (a stage or plugin replaced the body) and a body the gateway built are changed.
    for built in (RequestBody.of({"model": "same-name"}), RequestBody({"model": "same-name"})):
        assert built.changed and built.for_target(target("same-name"))[0] == b'{"model":"same-name"}'
    assert logged_bytes({"model": "m"}) == b'{"model":"m"}' and logged_bytes(None) == b""


class SilentEditor:
    """Edits the body in place and announces nothing (no verdict)."""

    async def before_request(self, request):
        request.body["temperature"] = 0


def test_an_unannounced_plugin_edit_leaves_the_clients_bytes(upstream, make_gateway):
    plugins = 'plugins:\n  - {path: "tests.integration.test_request_body:SilentEditor"}\n'
    gw = make_gateway(gateway_config(upstream.url, extra="telemetry: {enabled: false}\n" + plugins))
    upstream.json(CHAT)
    assert httpx.post(f"{gw.url}/v1/chat/completions", content=RAW,
                      headers={"Content-Type": "application/json"}).status_code == 200
    assert upstream.last.body == RAW


def test_without_a_change_the_upstream_gets_the_clients_bytes(upstream, make_gateway):
    gw = make_gateway(gateway_config(upstream.url, extra="telemetry: {enabled: false}\n"))
    upstream.json(CHAT)
    assert httpx.post(f"{gw.url}/v1/chat/completions", content=RAW,
                      headers={"Content-Type": "application/json"}).status_code == 200
    assert upstream.last.body == RAW
