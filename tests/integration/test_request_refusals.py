"""What a request is refused for before it goes anywhere, in the caller's protocol: a form on an
endpoint that reads only JSON (sent on raw it would skip translation, validation and the
plugins' checks, with the backend's key)."""

from __future__ import annotations

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
