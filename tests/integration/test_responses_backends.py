"""``/v1/responses`` on the other backend kinds: Azure serves it natively (its v1 route), an
Anthropic backend gets it translated through Chat Completions to the Messages API, and with
``cache.store: redis`` kept conversations are shared by every instance, with the TTL set."""

from __future__ import annotations

import openai
import orjson
import pytest

from gateway.cache.conversations import key
from gateway.cache.entry import JSON, CacheEntry
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import serve
from tests.support.redis_server import RedisServer
from tests.support.responses import response_object


def test_azure_serves_responses_on_its_v1_route_byte_for_byte():
    with FakeUpstream() as upstream:
        base = upstream.url.removesuffix("/v1")
        config = f"""
backends: {{az: {{type: azure, base_url: "{base}", api_key: az-secret-key}}}}
models: {{gpt-4o: {{targets: [{{backend: az, model: my-deployment}}]}}}}
telemetry: {{enabled: false}}
"""
        with serve(config) as srv:
            body = orjson.dumps(response_object("From Azure"))
            upstream.json(body)
            client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-client", max_retries=0)
            raw = client.responses.with_raw_response.create(model="gpt-4o", input="Hi")
            assert raw.http_response.content == body and raw.parse().output_text == "From Azure"
            sent = upstream.last
            assert (sent.path, sent.query, sent.headers["api-key"]) == ("/openai/v1/responses", "", "az-secret-key")
            assert sent.json() == {"model": "my-deployment", "input": "Hi"}


def test_an_anthropic_backend_answers_responses_translated():
    with FakeUpstream() as upstream:
        config = f"""
backends: {{claude: {{type: anthropic, base_url: "{upstream.url}", api_key: sk-ant-secret}}}}
models: {{sonnet: {{targets: [{{backend: claude, model: claude-sonnet-4}}]}}}}
telemetry: {{enabled: false}}
"""
        with serve(config) as srv:
            upstream.json({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
                           "content": [{"type": "thinking", "thinking": "Short.", "signature": "s"},
                                       {"type": "text", "text": "Hello from Claude"}],
                           "stop_reason": "end_turn", "stop_sequence": None,
                           "usage": {"input_tokens": 11, "output_tokens": 4}})
            client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-client", max_retries=0)
            answer = client.responses.create(model="sonnet", instructions="Be kind.", input="Hi", max_output_tokens=50)
            assert answer.output_text == "Hello from Claude" and answer.status == "completed"
            assert [item.type for item in answer.output] == ["reasoning", "message"]
            assert (answer.usage.input_tokens, answer.usage.output_tokens) == (11, 4)
            sent = upstream.last
            assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == "sk-ant-secret"
            assert sent.json()["system"] == "Be kind." and sent.json()["max_tokens"] == 50
            assert sent.json()["messages"] == [{"role": "user", "content": "Hi"}]


def test_kept_conversations_in_redis_are_shared_by_instances(tmp_path):
    redis = RedisServer(data_dir=str(tmp_path)).start()
    try:
        config = f"""
backends: {{mock: {{type: mock, mock: {{tokens: 4}}}}}}
models: {{mock-gpt: {{targets: [{{backend: mock}}]}}}}
cache: {{store: redis, redis_url: "{redis.url}", namespace: team-a, max_entry_bytes: 4000}}
responses: {{ttl_s: 120}}
telemetry: {{enabled: false}}
"""
        with serve(config) as one, serve(config) as two:
            first = openai.OpenAI(base_url=f"{one.url}/v1", api_key="x", max_retries=0).responses.create(
                model="mock-gpt", input="Remember me.")
            (kept,) = redis.client().keys("llm-gateway:responses:team-a:*")
            assert kept.decode().endswith(first.id) and 0 < redis.client().pttl(kept) <= 120_000
            second = openai.OpenAI(base_url=f"{two.url}/v1", api_key="x", max_retries=0).responses.create(
                model="mock-gpt", input="Again.", previous_response_id=first.id)
            assert second.previous_response_id == first.id and second.output_text
            assert len(redis.client().keys("llm-gateway:responses:team-a:*")) == 2
            # another deployment on the same Redis (another namespace) does not see them
            other = config.replace("namespace: team-a", "namespace: team-b")
            with serve(other) as three, pytest.raises(openai.BadRequestError):
                openai.OpenAI(base_url=f"{three.url}/v1", api_key="x", max_retries=0).responses.create(
                    model="mock-gpt", input="Again.", previous_response_id=first.id)
            # a conversation over cache.max_entry_bytes is not kept (in Redis too)
            long = openai.OpenAI(base_url=f"{one.url}/v1", api_key="x", max_retries=0).responses.create(
                model="mock-gpt", input="x" * 5000)
            assert long.output_text and len(redis.client().keys("llm-gateway:responses:team-a:*")) == 2
            # a kept value that does not decode is as good as none: not found, never a 500
            redis.client().set(key("", "resp_spoilt", "team-a"), CacheEntry(JSON, "responses", b"{not json").encode())
            with pytest.raises(openai.BadRequestError) as caught:
                openai.OpenAI(base_url=f"{two.url}/v1", api_key="x", max_retries=0).responses.create(
                    model="mock-gpt", input="Again.", previous_response_id="resp_spoilt")
            assert caught.value.body["code"] == "previous_response_not_found"
    finally:
        redis.stop()
