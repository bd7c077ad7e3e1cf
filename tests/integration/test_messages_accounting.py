"""What ``/v1/messages`` requests count: the rows' tokens (estimated for a backend without usage,
reasoning tokens, 0 for token counts), token limits and routing rules that see an Anthropic
request's system prompt and tool results."""

from __future__ import annotations

import anthropic
import pytest

from tests.support.access import KEY_A, access_config
from tests.support.fake_upstream import FakeUpstream, chat_chunk, sse_event
from tests.support.gateway import gateway_config
from tests.support.telemetry import chdb_dsn, tdb, telemetry_yaml  # noqa: F401
from tests.support.telemetry_rows import flush, select

USER = [{"role": "user", "content": "hello there"}]
CHAT = {"id": "chatcmpl-9", "object": "chat.completion", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi!"}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}
STREAM = [sse_event(chat_chunk(role=True)), sse_event(chat_chunk("Hel")), sse_event(chat_chunk("lo")),
          sse_event(chat_chunk(finish="stop")),
          sse_event(chat_chunk(choices=False, usage={"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11})),
          b"data: [DONE]\n\n"]


def client(gw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="unused", max_retries=0)


# --- usage ------------------------------------------------------------------------------------------
def test_a_backend_without_usage_gets_estimated_rows_not_zeros(upstream, make_gateway, tmp_path, tdb):  # noqa: F811
    gw = make_gateway(gateway_config(upstream.url, extra=telemetry_yaml(chdb_dsn(), tdb, tmp_path / "log")))
    upstream.json({**CHAT, "usage": None})
    client(gw).messages.create(model="gpt-test", max_tokens=64, messages=USER)
    upstream.sse([c for c in STREAM if b'"usage"' not in c])
    with client(gw).messages.stream(model="gpt-test", max_tokens=64, messages=USER) as stream:
        stream.get_final_message()
    flush(gw)
    rows = select(tdb, "SELECT stream, prompt_tokens, completion_tokens, tokens_estimated FROM llm_requests "
                       "ORDER BY ts_start")
    assert [(r["stream"], r["tokens_estimated"]) for r in rows] == [(0, 1), (1, 1)]
    assert all(r["prompt_tokens"] > 0 and r["completion_tokens"] > 0 for r in rows)

# --- limits --------------------------------------------------------------------------------------------
def test_token_limits_estimate_messages_requests(upstream, make_gateway):
    """A TPM limit admits a Messages request by its prompt (``system``, tool results and all)
    and ``max_tokens``, as it does a chat request: not as a 1-token request."""
    gw = make_gateway(access_config(upstream.url, key_a="tpm: 2000", extra="limits: {default_max_tokens: 100}"))
    upstream.json(CHAT)
    c = anthropic.Anthropic(base_url=gw.url, api_key=KEY_A, max_retries=0)
    file = "lorem ipsum " * 200  # a file a tool read: 2400 characters, some 600 tokens
    raw = c.messages.with_raw_response.create(model="gpt-test", max_tokens=300, system="word " * 400, messages=[
        *USER, {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": file}]}])
    reserved = 2000 - int(raw.headers["x-ratelimit-remaining-tokens"])
    assert 300 + 500 + 600 < reserved < 300 + 500 + 600 + 100  # max_tokens, the system prompt, the tool result
    with pytest.raises(anthropic.RateLimitError):  # more than the minute's tokens: refused before any backend
        c.messages.create(model="gpt-test", max_tokens=5000, messages=USER)


def test_token_counts_are_not_billed(make_gateway, tmp_path, tdb):  # noqa: F811
    """``count_tokens`` costs nothing at Anthropic and uses no model: its rows have no tokens and
    no cost, whether a native backend or the gateway counted."""
    with FakeUpstream() as chat, FakeUpstream() as claude:
        gw = make_gateway(f"""
backends:
  fake: {{type: openai, base_url: "{chat.url}", api_key: sk-backend-secret}}
  claude: {{type: anthropic, base_url: "{claude.url}", api_key: sk-ant-backend}}
models:
  gpt-test: {{targets: [{{backend: fake, model: up-model}}]}}
  claude: {{targets: [{{backend: claude, model: claude-x}}]}}
pricing:
  models:
    up-model: {{input: 1.0, output: 2.0}}
    claude-x: {{input: 3.0, output: 15.0}}
""" + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "log"))
        claude.json({"input_tokens": 42})
        c = client(gw)
        assert c.messages.count_tokens(model="claude", messages=USER).input_tokens == 42
        assert c.messages.count_tokens(model="gpt-test", messages=USER, system="word " * 300).input_tokens > 300
    flush(gw)
    rows = select(tdb, "SELECT endpoint, status_code, prompt_tokens, completion_tokens, tokens_estimated, cost_usd "
                       "FROM llm_requests ORDER BY ts_start")
    assert [(r["endpoint"], r["status_code"]) for r in rows] == [("messages/count_tokens", 200)] * 2
    assert [(r["prompt_tokens"], r["completion_tokens"], r["tokens_estimated"]) for r in rows] == [(0, 0, 0)] * 2
    assert all(not r["cost_usd"] for r in rows)

def test_reasoning_tokens_reach_the_answer_and_the_row(upstream, make_gateway, tmp_path, tdb):  # noqa: F811
    """A chat backend's ``reasoning_tokens`` are Anthropic's ``output_tokens_details.thinking_tokens``,
    and the row's ``reasoning_tokens`` (part of the completion, counted once)."""
    gw = make_gateway(gateway_config(upstream.url, extra=telemetry_yaml(chdb_dsn(), tdb, tmp_path / "log")))
    usage = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19,
             "completion_tokens_details": {"reasoning_tokens": 5}}
    upstream.json({**CHAT, "usage": usage})
    message = client(gw).messages.create(model="gpt-test", max_tokens=64, messages=USER)
    assert message.usage.output_tokens == 7 and message.usage.output_tokens_details.thinking_tokens == 5
    upstream.sse([*STREAM[:4], sse_event(chat_chunk(choices=False, usage=usage)), b"data: [DONE]\n\n"])
    with client(gw).messages.stream(model="gpt-test", max_tokens=64, messages=USER) as stream:
        assert stream.get_final_message().usage.output_tokens == 7
    flush(gw)
    rows = select(tdb, "SELECT completion_tokens, reasoning_tokens FROM llm_requests ORDER BY ts_start")
    assert [(r["completion_tokens"], r["reasoning_tokens"]) for r in rows] == [(7, 5), (7, 5)]


# --- routing ---------------------------------------------------------------------------------------------
def test_routing_counts_the_system_prompt(upstream, make_gateway):
    """Claude Code's system prompt alone runs to thousands of tokens: a long-prompt rule and a
    target's context window see it, as they see a chat request's system message."""
    gw = make_gateway(gateway_config(upstream.url, extra="""  gpt-long:
    targets: [{backend: fake, model: long-model}]
  gpt-small:
    targets: [{backend: fake, model: small-model, context_window: 1000}, {backend: fake, model: long-model}]
    fallback_on: [connect, timeout, 5xx]
routes:
  - name: long-prompts
    match: {model: "gpt-test", min_prompt_tokens: 1000}
    model: gpt-long
"""))
    upstream.json(CHAT)
    system = "word " * 2000  # some 2000 tokens; the messages are a few
    client(gw).messages.create(model="gpt-test", max_tokens=64, system=system, messages=USER)
    assert upstream.last.json()["model"] == "long-model"
    client(gw).messages.create(model="gpt-test", max_tokens=64, system="Be brief.", messages=USER)
    assert upstream.last.json()["model"] == "up-model"
    client(gw).messages.create(model="gpt-small", max_tokens=64, system=system, messages=USER)
    assert upstream.last.json()["model"] == "long-model"  # too big for the small target's window
