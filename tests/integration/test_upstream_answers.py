"""A backend that answers 2xx with something the endpoint does not speak — an HTML page, a JSON
body cut short, a stream request answered with neither events nor JSON — has failed: 502
``upstream_error`` in the caller's protocol, and a failed attempt the routing retries or falls
back from. Valid answers are relayed as before; non-JSON answers of pass-through paths too."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from gateway.app import FINISHERS
from tests.support.gateway import gateway_config
from tests.support.polling import wait_for

HTML = {"Content-Type": "text/html"}
MSG = [{"role": "user", "content": "hi"}]
CHAT = b'{"id":"c1","object":"chat.completion","created":1,"model":"up-model","choices":[{"index":0,' \
       b'"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],' \
       b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
NO_RETRY = "routing: {retry: {attempts: 1}}"


def sdk(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture
def once(upstream, make_gateway):
    """One try per target: the failure is the answer."""
    return make_gateway(gateway_config(upstream.url, extra=NO_RETRY))


@pytest.mark.parametrize("body, headers", [(b"<html>oops</html>", HTML), (CHAT[:40], {}), (b"", {})],
                         ids=["html", "cut JSON", "empty"])
def test_a_200_that_is_not_json_is_a_502(once, upstream, body, headers):
    records: list = []
    once.app[FINISHERS].append(records.append)
    upstream.json(body, headers=headers)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(once).chat.completions.create(model="gpt-test", messages=MSG)
    assert caught.value.status_code == 502 and caught.value.response.headers["x-gateway-attempts"] == "1"
    error = caught.value.body
    assert isinstance(error, dict) and error["type"] == "upstream_error" and "not JSON" in error["message"]
    wait_for(lambda: records, what="the request's row")
    assert records[0].status_code == 502 and records[0].attempt_log[0].error_type == "5xx"  # the row says so


def test_a_stream_request_answered_with_a_page_is_a_502(once, upstream):
    upstream.json(b"<html>oops</html>", headers=HTML)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(once).chat.completions.create(model="gpt-test", messages=MSG, stream=True)
    assert caught.value.status_code == 502 and "neither events nor JSON" in str(caught.value)
    # A backend that ignores `stream` and answers JSON is relayed as before.
    upstream.json(CHAT)
    r = httpx.post(f"{once.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG, "stream": True})
    assert r.status_code == 200 and r.content == CHAT


def test_a_bad_answer_is_retried_and_a_valid_one_relayed_byte_for_byte(gateway, upstream):
    upstream.json(b"<html>oops</html>", headers=HTML, times=1)
    upstream.json(CHAT)
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG})
    assert r.status_code == 200 and r.content == CHAT and r.headers["x-gateway-attempts"] == "2"
    assert len(upstream.received) == 2


def test_native_messages_and_responses_judge_the_answer_too(upstream, make_gateway):
    gw = make_gateway(f"""
backends:
  claude: {{type: anthropic, base_url: "{upstream.url}", api_key: sk-ant-backend}}
  oai: {{type: openai, base_url: "{upstream.url}", api_key: sk-oai-backend}}
models:
  claude: {{targets: [{{backend: claude, model: claude-x}}]}}
  gpt-4o: {{targets: [{{backend: oai}}]}}
{NO_RETRY}
""")
    upstream.json(b"<html>oops</html>", headers=HTML)
    claude = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude.messages.create(model="claude", max_tokens=5, messages=MSG)
    assert caught.value.status_code == 502 and caught.value.body["type"] == "error"  # Anthropic's shape
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude.messages.create(model="claude", max_tokens=5, messages=MSG, stream=True)
    assert caught.value.status_code == 502
    with pytest.raises(openai.APIStatusError) as caught_openai:
        sdk(gw).responses.create(model="gpt-4o", input="hi")
    assert caught_openai.value.status_code == 502
    with pytest.raises(openai.APIStatusError) as caught_openai:
        sdk(gw).responses.create(model="gpt-4o", input="hi", stream=True)
    assert caught_openai.value.status_code == 502


def test_a_translated_answer_that_is_not_a_completion_falls_back(upstream, make_gateway):
    """/v1/messages on an OpenAI backend: a page from the first target, the second answers."""
    gw = make_gateway(gateway_config(upstream.url, extra="""
  two:
    targets: [{backend: fake, model: a}, {backend: fake, model: b}]
routing: {retry: {attempts: 1}}
"""))
    upstream.json(b"<html>oops</html>", headers=HTML, times=1)
    upstream.json(CHAT)
    claude = anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)
    message = claude.messages.create(model="two", max_tokens=5, messages=MSG)
    assert message.content[0].text == "ok" and [r.json()["model"] for r in upstream.received] == ["a", "b"]
