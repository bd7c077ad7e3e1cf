"""``GET /v1/models`` and ``/v1/models/{id}`` for the ``anthropic`` SDK (``client.models.list()``,
``retrieve``): asked with ``anthropic-version`` they answer Anthropic's shape, paged, filtered by the
key exactly as OpenAI's listing is, errors in Anthropic's shape; without it, OpenAI's as before."""

from __future__ import annotations

import datetime

import anthropic
import httpx
import openai
import pytest

from tests.support.access import KEY_A, KEY_B, access_config


def claude(gw, key: str = KEY_A) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)  # x-api-key


@pytest.fixture
def gw(upstream, make_gateway):
    return make_gateway(access_config(upstream.url))


def test_the_sdk_lists_and_retrieves_the_keys_models(gw):
    page = claude(gw).models.list()
    assert [m.id for m in page.data] == ["gpt-test", "same-name"]  # team-a: gpt-*, same-*
    assert page.has_more is False and page.first_id == "gpt-test" and page.last_id == "same-name"
    model = page.data[0]
    assert model.type == "model" and model.display_name == "gpt-test" and model.lifecycle == "active"
    assert isinstance(model.created_at, datetime.datetime) and model.created_at.tzinfo is not None
    assert [m.id for m in claude(gw, KEY_B).models.list()] == ["gpt-test", "same-name", "mock-gpt"]
    bearer = anthropic.Anthropic(base_url=gw.url, auth_token=KEY_A, max_retries=0)  # Authorization: Bearer
    assert [m.id for m in bearer.models.list()] == ["gpt-test", "same-name"]
    one = claude(gw).models.retrieve("gpt-test")
    assert one.id == "gpt-test" and one.type == "model" and one._request_id
    # The same routes without anthropic-version stay OpenAI's.
    openai_client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY_A, max_retries=0)
    assert sorted(m.id for m in openai_client.models.list().data) == ["gpt-test", "same-name"]
    assert openai_client.models.retrieve("gpt-test").object == "model"


def test_pages_follow_limit_and_the_cursors(gw):
    c = claude(gw, KEY_B)
    first = c.models.list(limit=2)
    assert [m.id for m in first.data] == ["gpt-test", "same-name"] and first.has_more is True
    assert [m.id for m in first.get_next_page().data] == ["mock-gpt"]
    assert [m.id for m in c.models.list(limit=1)] == ["gpt-test", "same-name", "mock-gpt"]  # the SDK pages on
    after = c.models.list(after_id="same-name")
    assert [m.id for m in after.data] == ["mock-gpt"] and after.has_more is False
    before = c.models.list(before_id="mock-gpt", limit=1)
    assert [m.id for m in before.data] == ["same-name"] and before.has_more is True
    assert c.models.list(lifecycle=["retired"]).data == []  # every model the gateway serves is active
    assert len(c.models.list(lifecycle=["active", "deprecated"]).data) == 3


def test_errors_in_anthropic_shape(gw):
    with pytest.raises(anthropic.AuthenticationError) as no_key:
        claude(gw, "sk-wrong").models.list()
    assert no_key.value.body["type"] == "error" and no_key.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.PermissionDeniedError) as denied:  # a model of the config, not of this key
        claude(gw).models.retrieve("mock-gpt")
    assert denied.value.body["error"]["type"] == "permission_error"
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude(gw).models.retrieve("no-such-model")
    assert missing.value.body["error"]["type"] == "not_found_error"
    for query, param in (({"limit": 0}, "limit"), ({"limit": "x"}, "limit"), ({"after_id": "mock-gpt"}, "after_id")):
        with pytest.raises(anthropic.BadRequestError) as bad:  # team-a cannot see mock-gpt: no cursor there
            claude(gw).models.list(extra_query=query)
        assert bad.value.body["error"]["type"] == "invalid_request_error"
        assert bad.value.body["error"]["message"].startswith(param)
    r = httpx.get(f"{gw.url}/v1/models", headers={"anthropic-version": "2023-06-01"})  # no key at all
    assert r.status_code == 401 and r.json()["type"] == "error" and r.headers["request-id"]
