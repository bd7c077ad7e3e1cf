"""What a request is refused for before it goes anywhere, in the caller's protocol: a form on an
endpoint that reads only JSON (sent on raw it would skip translation, validation and the
plugins' checks, with the backend's key); any body without a valid key (401 before the body is
judged); a body in a Content-Encoding the gateway does not decode (415, never read as identity)."""

from __future__ import annotations

import gzip

import brotli  # the gateway's dependency: aiohttp decodes br with it
import httpx
import pytest

from tests.support.access import KEY_A, access_config

FORM = {"model": (None, "gpt-test"), "messages": (None, "hi"), "input": (None, "hi"), "prompt": (None, "hi")}


@pytest.fixture
def keyed(upstream, make_gateway):
    return make_gateway(access_config(upstream.url))


@pytest.mark.parametrize("endpoint", ["chat/completions", "completions", "embeddings", "responses"])
def test_a_form_on_an_openai_json_endpoint_is_a_400_and_goes_nowhere(keyed, upstream, endpoint):
    r = httpx.post(f"{keyed.url}/v1/{endpoint}", files=FORM, headers={"Authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and "could not parse the JSON body" in error["message"]
    assert r.headers["x-request-id"] and not upstream.received


def test_a_form_on_messages_is_refused_in_anthropics_shape(keyed, upstream):
    r = httpx.post(f"{keyed.url}/v1/messages", files=FORM, headers={"x-api-key": KEY_A})
    assert r.status_code == 400 and r.json()["type"] == "error" and "multipart form" in r.json()["error"]["message"]
    assert not upstream.received


@pytest.mark.parametrize("endpoint", ["chat/completions", "responses", "messages", "embeddings"])
@pytest.mark.parametrize("body", [b"{}", b"{not json", b"[1]", b'{"model": 123}', b'{"model": "x", "model": "y"}'],
                         ids=["no model", "not JSON", "an array", "a number", "model twice"])
@pytest.mark.parametrize("key", [None, "sk-gw-wrong-0123456789abcdef"], ids=["no key", "a wrong key"])
def test_a_caller_without_a_valid_key_gets_401_before_its_body_is_judged(keyed, upstream, endpoint, body, key):
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["x-api-key" if endpoint == "messages" else "Authorization"] = \
            key if endpoint == "messages" else f"Bearer {key}"
    r = httpx.post(f"{keyed.url}/v1/{endpoint}", content=body, headers=headers)
    assert r.status_code == 401, r.text
    if endpoint == "messages":
        assert r.json()["type"] == "error" and r.json()["error"]["type"] == "authentication_error"
    else:
        assert r.json()["error"]["code"] == "invalid_api_key"
    r = httpx.post(f"{keyed.url}/v1/{endpoint}", files=FORM, headers=headers)  # a form, too
    assert r.status_code == 401, r.text
    assert not upstream.received


@pytest.mark.parametrize("endpoint", ["chat/completions", "messages"])
def test_a_model_that_is_not_a_string_is_named_as_such(keyed, endpoint):
    r = httpx.post(f"{keyed.url}/v1/{endpoint}", json={"model": 123, "messages": [], "max_tokens": 5},
                   headers={"Authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "must be a string" in message and "provide a model" not in message


CHAT_BODY = b'{"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}'


@pytest.mark.parametrize("encoding", ["zstd", "foo", "gzip, br", "x-gzip"])
def test_a_body_in_an_encoding_the_gateway_does_not_decode_is_a_415(keyed, upstream, encoding):
    """Never read as identity, never aiohttp's plain-text answer: 415 in the caller's protocol."""
    for path, auth in (("chat/completions", {"Authorization": f"Bearer {KEY_A}"}), ("messages", {"x-api-key": KEY_A})):
        r = httpx.post(f"{keyed.url}/v1/{path}", content=CHAT_BODY,
                       headers={**auth, "content-type": "application/json", "content-encoding": encoding})
        assert r.status_code == 415 and r.headers["content-type"].startswith("application/json"), r.text
        assert r.headers["x-request-id"]
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error" and "Content-Encoding" in error["message"]
        if path == "messages":
            assert r.json()["type"] == "error"
        else:
            assert error["code"] == "unsupported_media_type"
    assert not upstream.received


def test_brotli_and_gzip_bodies_are_decoded_and_a_broken_one_is_a_json_400(keyed, upstream):
    upstream.json({"ok": True})
    headers = {"Authorization": f"Bearer {KEY_A}", "content-type": "application/json"}
    for encoding, data in (("br", brotli.compress(CHAT_BODY)), ("gzip", gzip.compress(CHAT_BODY)),
                           ("BR", brotli.compress(CHAT_BODY))):
        r = httpx.post(f"{keyed.url}/v1/chat/completions", content=data,
                       headers={**headers, "content-encoding": encoding})
        assert r.status_code == 200 and upstream.last.json()["model"] == "up-model", (encoding, r.text)
    r = httpx.post(f"{keyed.url}/v1/chat/completions", content=CHAT_BODY, headers={**headers, "content-encoding": "br"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unreadable_body"
