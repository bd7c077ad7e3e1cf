"""``/v1/responses`` translated to Chat Completions keeps ``user``, ``prompt_cache_key`` and
``safety_identifier``: OpenAI's Chat Completions takes all three, so OpenAI-type backends get them;
vLLM gets ``user`` (the other two it would ignore, logging a warning each time) and Anthropic its
``metadata.user_id``. The response echoes them as OpenAI's does."""

from __future__ import annotations

import openai
import pytest

from tests.support.fake_upstream import FakeUpstream, chat_chunk, sse_event

CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
           "content": [{"type": "text", "text": "Hi."}], "stop_reason": "end_turn", "stop_sequence": None,
           "usage": {"input_tokens": 5, "output_tokens": 2}}
FIELDS = {"user": "u-42", "prompt_cache_key": "session-7", "safety_identifier": "hash-of-user-42"}


@pytest.fixture
def srv(make_gateway):
    with FakeUpstream() as oai, FakeUpstream() as vllm, FakeUpstream() as claude:
        gw = make_gateway(f"""
backends:
  oai: {{type: openai, base_url: "{oai.url}", api_key: sk-1, responses: translate}}
  az: {{type: azure, base_url: "{oai.url.removesuffix('/v1')}", api_key: sk-2, responses: translate}}
  vllm: {{type: vllm, base_url: "{vllm.url}", responses: translate, vllm: {{enabled: false}}}}  # a chat fake: no /metrics to scrape
  claude: {{type: anthropic, base_url: "{claude.url}", api_key: sk-3}}
models:
  gpt: {{targets: [{{backend: oai, model: up}}]}}
  azure-gpt: {{targets: [{{backend: az, model: deployment}}]}}
  local: {{targets: [{{backend: vllm, model: qwen}}]}}
  sonnet: {{targets: [{{backend: claude, model: claude-sonnet-4}}]}}
""")
        for fake in (oai, vllm):
            fake.json(CHAT)
        claude.json(MESSAGE)
        yield openai.OpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=0), oai, vllm, claude


def test_openai_type_backends_get_all_three(srv):
    client, oai, _, _ = srv
    for model in ("gpt", "azure-gpt"):
        answer = client.responses.create(model=model, input="Hi", **FIELDS)
        sent = oai.last.json()
        assert {k: sent.get(k) for k in FIELDS} == FIELDS, (model, sent)
        assert (answer.user, answer.prompt_cache_key, answer.safety_identifier) == tuple(FIELDS.values())
    oai.sse([sse_event(chat_chunk("Hi.")), sse_event(chat_chunk(finish="stop")), b"data: [DONE]\n\n"])
    with client.responses.stream(model="gpt", input="Hi", **FIELDS) as stream:
        final = stream.get_final_response()
    assert final.prompt_cache_key == "session-7" and oai.last.json()["prompt_cache_key"] == "session-7"


def test_vllm_gets_user_and_anthropic_its_user_id(srv):
    client, _, vllm, claude = srv
    client.responses.create(model="local", input="Hi", **FIELDS)
    sent = vllm.last.json()
    assert sent["user"] == "u-42" and not {"prompt_cache_key", "safety_identifier"} & set(sent)
    client.responses.create(model="sonnet", input="Hi", **FIELDS)
    sent = claude.last.json()
    assert sent["metadata"] == {"user_id": "u-42"} and not {"user", "prompt_cache_key", "safety_identifier"} & set(sent)
