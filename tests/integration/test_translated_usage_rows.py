"""Rows of requests translated to Chat Completions (``/v1/responses``, ``/v1/messages``) keep a
count the backend did not report unknown: ``cached_tokens`` and ``reasoning_tokens`` are NULL, as
on native rows, though the Responses answer itself must say 0 there (its usage object has the
fields); a backend that reported 0 gets 0. Through the request log into chDB."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.support.fake_upstream import chat_chunk, sse_event
from tests.support.gateway import gateway_config
from tests.support.telemetry import chdb_dsn, tdb, telemetry_yaml  # noqa: F401
from tests.support.telemetry_rows import flush, select

BARE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
ZEROS = {**BARE, "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}}
SOME = {**BARE, "prompt_tokens_details": {"cached_tokens": 4}, "completion_tokens_details": {"reasoning_tokens": 2}}


def chat(usage: dict) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up-model", "usage": usage,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi."}, "finish_reason": "stop"}]}


def stream(usage: dict) -> list[bytes]:
    return [sse_event(chat_chunk(role=True)), sse_event(chat_chunk("Hi.")), sse_event(chat_chunk(finish="stop")),
            sse_event(chat_chunk(choices=False, usage=usage)), b"data: [DONE]\n\n"]


@pytest.fixture
def gw(upstream, make_gateway, tmp_path, tdb):  # noqa: F811
    return make_gateway(gateway_config(upstream.url, extra=telemetry_yaml(chdb_dsn(), tdb, tmp_path / "log"),
                                       backend_extra="    responses: translate"))


def rows(gw, tdb) -> list[tuple]:  # noqa: F811
    flush(gw)
    return [(r["endpoint"], r["stream"], r["prompt_tokens"], r["cached_tokens"], r["reasoning_tokens"])
            for r in select(tdb, "SELECT endpoint, stream, prompt_tokens, cached_tokens, reasoning_tokens "
                                 "FROM llm_requests ORDER BY ts_start")]


def test_responses_rows_keep_unreported_counts_unknown(upstream, gw, tdb):  # noqa: F811
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=0)
    upstream.json(chat(BARE))
    answer = client.responses.create(model="gpt-test", input="Hi")
    assert (answer.usage.input_tokens_details.cached_tokens, answer.usage.output_tokens_details.reasoning_tokens) \
        == (0, 0)  # the answer's shape needs numbers; the row does not
    for usage in (BARE, ZEROS, SOME):
        upstream.sse(stream(usage))
        with client.responses.stream(model="gpt-test", input="Hi") as events:
            events.get_final_response()
    upstream.json(chat(SOME))
    client.responses.create(model="gpt-test", input="Hi")
    assert rows(gw, tdb) == [("responses", 0, 12, None, None), ("responses", 1, 12, None, None),
                             ("responses", 1, 12, 0, 0), ("responses", 1, 12, 4, 2), ("responses", 0, 12, 4, 2)]


def test_messages_rows_keep_unreported_counts_unknown(upstream, gw, tdb):  # noqa: F811
    client = anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0)
    user = [{"role": "user", "content": "Hi"}]
    for usage in (BARE, ZEROS):
        upstream.json(chat(usage))
        client.messages.create(model="gpt-test", max_tokens=16, messages=user)
        upstream.sse(stream(usage))
        with client.messages.stream(model="gpt-test", max_tokens=16, messages=user) as events:
            events.get_final_message()
    assert rows(gw, tdb) == [("messages", 0, 12, None, None), ("messages", 1, 12, None, None),
                             ("messages", 0, 12, 0, 0), ("messages", 1, 12, 0, 0)]
