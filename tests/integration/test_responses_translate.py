"""``/v1/responses`` on targets that speak only Chat Completions, with the official openai SDK:
``responses.create`` (JSON and ``stream=True``, every event parsed by the SDK's own types),
``responses.stream`` (the SDK's accumulator rebuilds the answer), function tools and
``previous_response_id`` (kept per tenant, ``store: false`` keeps nothing), a backend failure
mid-stream, and rows with tokens and cost."""

from __future__ import annotations

import hashlib

import httpx
import openai
import orjson
import pytest

from tests.support.fake_upstream import FakeUpstream, chat_chunk, sse_event
from tests.support.gateway import serve
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml, wait_for  # noqa: F401
from tests.support.telemetry_rows import flush, select

KEY_A, KEY_B = "sk-gw-tenant-a-0123456789", "sk-gw-tenant-b-0123456789"
TOOL = {"type": "function", "name": "get_weather", "description": "Weather in a city", "strict": True,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                       "additionalProperties": False}}
USAGE = {"prompt_tokens": 25, "completion_tokens": 7, "total_tokens": 32, "prompt_tokens_details": {"cached_tokens": 5}}


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
def setup(tmp_path, tdb):
    with FakeUpstream() as upstream:
        text = f"""
backends:
  chat: {{type: openai, base_url: "{upstream.url}", api_key: sk-backend-secret, responses: translate}}
  mock: {{type: mock, mock: {{tokens: 6}}}}
models:
  gpt-4o: {{targets: [{{backend: chat, model: up-model}}]}}
  mock-gpt: {{targets: [{{backend: mock}}]}}
keys:
  - {{tenant: a, sha256: {_sha(KEY_A)}}}
  - {{tenant: b, sha256: {_sha(KEY_B)}}}
pricing:
  models:
    up-model: {{input: 1.0, output: 2.0, cached_input: 0.5}}
""" + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "log")
        with serve(text) as srv:
            yield srv, upstream


def _client(srv, key: str = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key=key, max_retries=0)


def _completion(message: dict, finish: str = "stop") -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "up-model-0613",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": USAGE}


def _stream(deltas: list[dict], finish: str = "stop") -> list[bytes]:
    chunks = [sse_event(chat_chunk(role=True, model="up-model-0613"))]
    for delta in deltas:
        chunk = chat_chunk(model="up-model-0613")
        chunk["choices"][0]["delta"] = delta
        chunks.append(sse_event(chunk))
    return chunks + [sse_event(chat_chunk(finish=finish, model="up-model-0613")),
                     sse_event(chat_chunk(choices=False, usage=USAGE, model="up-model-0613")), b"data: [DONE]\n\n"]


def test_json_answer_with_reasoning_and_a_tool_call_then_its_output(setup):
    srv, upstream = setup
    client = _client(srv)
    upstream.json(_completion({"content": "Let me check.", "reasoning_content": "Weather needs the tool.",
                               "tool_calls": [{"id": "call_1", "type": "function", "function": {
                                   "name": "get_weather", "arguments": '{"city":"Oslo"}'}}]}, "tool_calls"), times=1)
    first = client.responses.create(model="gpt-4o", instructions="Be brief.", tools=[TOOL], max_output_tokens=64,
                                    input=[{"role": "user", "content": [{"type": "input_text", "text": "Oslo?"}]}],
                                    reasoning={"effort": "low"}, temperature=0.3, metadata={"run": "t1"})
    sent = upstream.last
    assert sent.path == "/v1/chat/completions" and sent.headers["Authorization"] == "Bearer sk-backend-secret"
    assert sent.json() == {
        "model": "up-model", "temperature": 0.3, "max_completion_tokens": 64, "reasoning_effort": "low",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Oslo?"}],
        "tools": [{"type": "function", "function": {k: v for k, v in TOOL.items() if k != "type"}}]}
    assert first.id.startswith("resp_") and first.status == "completed" and first.model == "up-model-0613"
    assert [item.type for item in first.output] == ["reasoning", "message", "function_call"]
    assert first.output_text == "Let me check." and first.metadata == {"run": "t1"}
    call = first.output[2]
    assert (call.call_id, call.name, call.arguments) == ("call_1", "get_weather", '{"city":"Oslo"}')
    assert (first.usage.input_tokens, first.usage.output_tokens, first.usage.input_tokens_details.cached_tokens) == \
        (25, 7, 5)

    upstream.json(_completion({"content": "It is cold in Oslo."}), times=1)
    second = client.responses.create(model="gpt-4o", previous_response_id=first.id, tools=[TOOL], input=[
        {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": -3}'}])
    assert second.output_text == "It is cold in Oslo." and second.previous_response_id == first.id
    assert upstream.last.json()["messages"] == [  # the kept conversation, then this turn (no old instructions)
        {"role": "user", "content": "Oslo?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": -3}'}]


def test_previous_response_id_is_per_tenant_and_store_false_keeps_nothing(setup):
    srv, upstream = setup
    upstream.json(_completion({"content": "Noted."}))
    kept = _client(srv).responses.create(model="gpt-4o", input="Remember 42.")
    not_kept = _client(srv).responses.create(model="gpt-4o", input="Forget this.", store=False)
    assert _client(srv).responses.create(model="gpt-4o", input="And?", previous_response_id=kept.id).output_text
    assert upstream.last.json()["messages"][:2] == [{"role": "user", "content": "Remember 42."},
                                                    {"role": "assistant", "content": "Noted."}]
    for key, previous in ((KEY_B, kept.id), (KEY_A, not_kept.id), (KEY_A, "resp_unknown")):
        with pytest.raises(openai.BadRequestError) as caught:
            _client(srv, key).responses.create(model="gpt-4o", input="And?", previous_response_id=previous)
        error = caught.value.body
        assert (error["code"], error["param"]) == ("previous_response_not_found", "previous_response_id")
    assert len(upstream.received) == 3  # refused before any backend was asked


def test_streams_have_the_whole_lifecycle_in_the_sdks_types(setup):
    srv, upstream = setup
    client = _client(srv)
    upstream.sse(_stream([{"reasoning_content": "Hm."}, {"content": "Hel"}, {"content": "lo"}]), times=1)
    events = list(client.responses.create(model="gpt-4o", input="Hi", stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.reasoning_text.delta",
        "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert [e.output_index for e in events if hasattr(e, "output_index")] == [0] * 6 + [1] * 7
    assert events[-1].response.output_text == "Hello" and events[-1].response.usage.total_tokens == 32
    assert upstream.last.json()["stream_options"] == {"include_usage": True}

    arguments = ['{"city"', ':"Oslo"}']
    upstream.sse(_stream([{"tool_calls": [{"index": 0, "id": "call_7", "type": "function",
                                           "function": {"name": "get_weather", "arguments": ""}}]}]
                         + [{"tool_calls": [{"index": 0, "function": {"arguments": a}}]} for a in arguments],
                         "tool_calls"), times=1)
    with client.responses.stream(model="gpt-4o", input="Oslo?", tools=[TOOL]) as stream:
        deltas = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert deltas == arguments
    (call,) = final.output
    assert (call.type, call.call_id, call.arguments, final.status) == ("function_call", "call_7", '{"city":"Oslo"}',
                                                                       "completed")


def test_the_mock_backend_answers_responses_json_and_streams(setup):
    srv, _ = setup
    client = _client(srv)
    answer = client.responses.create(model="mock-gpt", input="Say something")
    # the mock's words are its whole answer (finish_reason "stop"): a completed turn
    assert len(answer.output_text.split()) == 6 and answer.usage.output_tokens == 6
    assert answer.status == "completed" and answer.incomplete_details is None
    called = client.responses.create(model="mock-gpt", input="Weather in Oslo?", tools=[TOOL], tool_choice="required")
    (call,) = [item for item in called.output if item.type == "function_call"]
    assert call.name == "get_weather" and isinstance(orjson.loads(call.arguments)["city"], str)
    with client.responses.stream(model="mock-gpt", input="Say something", max_output_tokens=3) as stream:
        events = list(stream)
    texts = [e.delta for e in events if e.type == "response.output_text.delta"]
    final = events[-1].response  # an answer cut by its token limit ends as OpenAI's do: response.incomplete
    assert events[-1].type == "response.incomplete" and len(texts) == 3 and "".join(texts) == final.output_text
    assert final.incomplete_details.reason == "max_output_tokens" and final.usage.output_tokens == 3


def test_a_backend_failure_mid_stream_ends_in_response_failed_and_rows_have_tokens(setup, tdb):
    srv, upstream = setup
    client = _client(srv)
    upstream.sse(_stream([{"content": "Hel"}, {"content": "lo"}]), abort_after=2, times=1)
    events = list(client.responses.create(model="gpt-4o", input="Hi", stream=True,
                                          extra_headers={"x-request-id": "cut"}))
    assert [e.type for e in events][-2:] == ["error", "response.failed"]
    assert events[-2].code == "upstream_error" and events[-1].response.status == "failed"  # the connection broke
    assert [e.sequence_number for e in events] == list(range(len(events)))
    upstream.json(_completion({"content": "Hello"}), times=1)
    client.responses.create(model="gpt-4o", input="Hi", extra_headers={"x-request-id": "json"})
    upstream.sse(_stream([{"content": "Hel"}, {"content": "lo"}]), chunk_delay_s=0.01, times=1)
    with httpx.stream("POST", f"{srv.url}/v1/responses", json={"model": "gpt-4o", "input": "Hi", "stream": True},
                      headers={"Authorization": f"Bearer {KEY_A}", "x-request-id": "stream"}) as resp:
        body = resp.read()
    assert body.endswith(b"\n\n") and b"event: response.completed" in body
    wait_for(lambda: httpx.get(f"{srv.url}/admin/telemetry").json()["written"] == 3, what="3 records")
    flush(srv)
    rows = {r["client_request_id"]: r for r in select(tdb, "SELECT * FROM llm_requests")}
    for name in ("json", "stream"):
        row = rows[name]
        assert (row["endpoint"], row["status_code"], row["provider"], row["model_served"]) == \
            ("responses", 200, "openai", "up-model-0613")
        assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"], row["tokens_estimated"]) == \
            (25, 7, 5, 0)
        assert row["cost_usd"] == pytest.approx((20 * 1.0 + 5 * 0.5 + 7 * 2.0) / 1e6) and row["tenant"] == "a"
        assert row["finish_reason"] == "stop" and 0 < row["ttft_ms"] <= row["latency_ms"]
    assert rows["stream"]["itl_max_ms"] is not None
    assert (rows["cut"]["status_code"], rows["cut"]["error_type"], rows["cut"]["truncated"]) == \
        (502, "upstream_error", True)



def test_the_conversations_stage_is_only_where_a_backend_translates():
    from gateway.app import FEATURES, RUNTIME

    for responses, present in (("native", False), ("translate", True)):
        with serve(f"""
backends: {{up: {{type: openai, base_url: "http://127.0.0.1:9/v1", responses: {responses}}}}}
models: {{m: {{targets: [{{backend: up}}]}}}}
telemetry: {{enabled: false}}
""") as srv:
            stage = next(f for f in srv.app[FEATURES] if f.name == "conversations").conversations
            assert (stage in srv.app[RUNTIME].current.stages) is present


def test_a_target_that_cannot_continue_a_response_gives_way_to_one_that_can():
    """``previous_response_id`` of a response the gateway never kept: a translated target cannot
    continue it, so a native target of the same model gets the request as the client sent it."""
    with FakeUpstream() as upstream, serve(f"""
backends:
  mock: {{type: mock}}
  native: {{type: openai, base_url: "{upstream.url}"}}
models:
  mixed: {{targets: [{{backend: mock}}, {{backend: native}}]}}
telemetry: {{enabled: false}}
""") as srv:
        upstream.json(orjson.dumps({"id": "resp_native_2", "object": "response", "output": []}))
        r = httpx.post(f"{srv.url}/v1/responses", json={"model": "mixed", "input": "Go on.",
                                                       "previous_response_id": "resp_native_1"})
        assert r.status_code == 200 and r.json()["id"] == "resp_native_2" and r.headers["x-gateway-backend"] == "native"
        assert upstream.last.json() == {"model": "mixed", "input": "Go on.", "previous_response_id": "resp_native_1"}


def test_a_codex_shaped_turn_is_answered(setup):
    """What a coding agent such as Codex sends: developer messages, an earlier reasoning item with
    encrypted content, ``include``, ``store: false``, ``prompt_cache_key``, a reasoning summary,
    text verbosity — the chat backend gets what it can use, the agent a streamed tool call."""
    srv, upstream = setup
    upstream.sse(_stream([{"tool_calls": [{"index": 0, "id": "call_ls", "type": "function", "function": {
        "name": "shell", "arguments": '{"command":["ls"]}'}}]}], "tool_calls"), times=1)
    shell = {"type": "function", "name": "shell", "description": "Runs a command", "strict": False,
             "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                            "required": ["command"]}}
    with _client(srv).responses.stream(
            model="gpt-4o", instructions="You are a coding agent.", store=False, tools=[shell], tool_choice="auto",
            include=["reasoning.encrypted_content"], prompt_cache_key="session-1", parallel_tool_calls=False,
            reasoning={"effort": "medium", "summary": "auto"}, text={"verbosity": "low"},
            input=[{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "cwd: /repo"}]},
                   {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List files"}]},
                   {"type": "reasoning", "id": "rs_0", "summary": [], "encrypted_content": "opaque"}]) as stream:
        final = stream.get_final_response()
    (call,) = final.output
    assert (call.type, call.name, call.arguments) == ("function_call", "shell", '{"command":["ls"]}')
    sent = upstream.last.json()
    assert sent["messages"] == [{"role": "system", "content": "You are a coding agent.\n\ncwd: /repo"},
                                {"role": "user", "content": "List files"}]
    assert (sent["reasoning_effort"], sent["parallel_tool_calls"], sent["tool_choice"]) == ("medium", False, "auto")
    assert not {"include", "store", "text", "reasoning", "input"} & set(sent)
    assert sent["prompt_cache_key"] == "session-1"  # OpenAI's Chat Completions takes it too
