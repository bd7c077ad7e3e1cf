"""Every refusal of a body on Anthropic's endpoints (``/v1/messages``, ``/v1/messages/count_tokens``)
answers in Anthropic's error shape, in words that name no other API: bodies that are not JSON (or
not readable), forms, duplicate or case-variant keys, bodies over the limit, and the browser
checks of a gateway without keys (wrong content type, a foreign ``Origin``)."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from tests.support.access import KEY_A, sha
from tests.support.gateway import gateway_config

JSON = {"content-type": "application/json"}
BIG = b'{"model": "gpt-test", "max_tokens": 5, "messages": [], "x": "' + b"a" * 5000 + b'"}'
# (what is sent, the status, Anthropic's error type, words the message has)
BODIES = {
    "not JSON": (dict(content=b"{not json", headers=JSON), 400, "invalid_request_error", "not valid JSON"),
    "not UTF-8": (dict(content=b'{"model": "gpt-test", "x": "\xff"}', headers=JSON), 400, "invalid_request_error",
                  "not valid JSON"),
    "a form": (dict(files={"model": (None, "gpt-test"), "max_tokens": (None, "5")}), 400, "invalid_request_error",
               "multipart form"),
    "url-encoded": (dict(data={"model": "gpt-test"}), 400, "invalid_request_error", "not valid JSON"),
    "broken gzip": (dict(content=b"not gzip", headers={**JSON, "content-encoding": "gzip"}), 400,
                    "invalid_request_error", "could not be read"),
    "an array": (dict(content=b"[1]", headers=JSON), 400, "invalid_request_error", "JSON object"),
    "model twice": (dict(content=b'{"model": "gpt-test", "model": "other", "max_tokens": 5, "messages": []}',
                         headers=JSON), 400, "invalid_request_error", "more than once"),
    "a case variant": (dict(content=b'{"model": "gpt-test", "Max_tokens": 5, "messages": []}', headers=JSON), 400,
                       "invalid_request_error", "Max_tokens"),
    "too large": (dict(content=BIG, headers=JSON), 413, "request_too_large", "exceeds the limit"),
    "too large, chunked": (dict(content=None, headers=JSON), 413, "request_too_large", "exceeds the limit"),
}


def assert_anthropic_error(r: httpx.Response, status: int, kind: str, words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"type", "error"} and body["type"] == "error", body
    assert set(body["error"]) == {"type", "message"} and body["error"]["type"] == kind, body
    assert words in body["error"]["message"] and "openai" not in body["error"]["message"].lower(), body


@pytest.fixture
def keyed(upstream, make_gateway):
    return make_gateway(gateway_config(upstream.url, extra=f"""
server: {{body_limit_bytes: 4096}}
keys:
  - {{tenant: a, sha256: {sha(KEY_A)}, models: ["gpt-*"]}}
"""))


@pytest.mark.parametrize("endpoint", ["messages", "messages/count_tokens"])
@pytest.mark.parametrize("case", list(BODIES))
def test_body_refusals_in_anthropic_shape(upstream, keyed, endpoint, case):
    send, status, kind, words = BODIES[case]
    if send.get("content", b"") is None:  # no Content-Length: the limit is met while reading
        send = {**send, "content": iter([BIG])}
    r = httpx.post(f"{keyed.url}/v1/{endpoint}", timeout=30,
                   **{**send, "headers": {**send.get("headers", {}), "x-api-key": KEY_A,
                                          "anthropic-version": "2023-06-01"}})
    assert_anthropic_error(r, status, kind, words)
    assert not upstream.received  # refused here: a form is not sent on as an upload either


def test_the_sdk_reads_the_browser_checks_in_anthropic_shape(upstream, gateway):
    """Without keys, a body that is not declared JSON (415) or a foreign page's request (403)."""
    c = anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0)
    user = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.APIStatusError) as plain:
        c.messages.create(model="gpt-test", max_tokens=5, messages=user, extra_headers={"content-type": "text/plain"})
    assert plain.value.status_code == 415
    assert plain.value.body["type"] == "error" and plain.value.body["error"]["type"] == "invalid_request_error"
    assert "Content-Type: application/json" in plain.value.body["error"]["message"]
    with pytest.raises(anthropic.PermissionDeniedError) as foreign:
        c.messages.count_tokens(model="gpt-test", messages=user, extra_headers={"origin": "https://evil.example"})
    assert foreign.value.body["type"] == "error" and foreign.value.body["error"]["type"] == "permission_error"
    assert not upstream.received


def test_chat_completions_keeps_openais_words(keyed):
    r = httpx.post(f"{keyed.url}/v1/chat/completions", content=b"{not json", timeout=30,
                   headers={**JSON, "authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 400 and "The OpenAI API expects a JSON payload" in r.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError) as form:  # a form to Responses: refused in OpenAI's words
        openai.OpenAI(base_url=f"{keyed.url}/v1", api_key=KEY_A, max_retries=0).responses.create(
            model="gpt-test", input="hi", extra_headers={"content-type": "multipart/form-data; boundary=x"})
    assert "The OpenAI API expects a JSON payload" in form.value.message
