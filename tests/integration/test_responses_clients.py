"""``/v1/responses`` as real clients (the openai SDK, Codex) and backends use it beyond the happy
path: values sent as ``null`` or of the wrong type, answers checked strictly against the SDK's
own types (``Response``, every stream event), chat backends whose streams differ from OpenAI's
(tool calls without an ``index`` or ids, numeric error codes), reasoning summaries and custom
tools as Codex asks for them, TPM estimates, the kept conversations' bound, tenants and Redis,
a client leaving mid-stream, and native rows of a turn that is one custom tool call."""

from __future__ import annotations

import hashlib

import httpx
import openai
import orjson
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.support.access import KEY_A, access_config
from tests.support.fake_upstream import FakeUpstream, chat_chunk, sse_event
from tests.support.gateway import serve
from tests.support.polling import wait_for
from tests.support.redis_server import RedisServer
from tests.support.responses import response_object
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml  # noqa: F401
from tests.support.telemetry_rows import flush, select

RESPONSE = TypeAdapter(Response)
EVENT = TypeAdapter(ResponseStreamEvent)
USAGE = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}


@pytest.fixture
def setup():
    with FakeUpstream() as upstream, serve(f"""
backends:
  chat: {{type: openai, base_url: "{upstream.url}", api_key: sk-backend-secret, responses: translate}}
models:
  gpt-4o: {{targets: [{{backend: chat, model: up-model}}]}}
telemetry: {{enabled: false}}
""") as srv:
        yield srv, upstream


def _client(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)


def _completion(message: dict, finish: str = "stop") -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "up-model",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": USAGE}


def _stream(deltas: list[dict], finish: str = "stop") -> list[bytes]:
    chunks = [sse_event(chat_chunk(role=True))]
    for delta in deltas:
        chunk = chat_chunk()
        chunk["choices"][0]["delta"] = delta
        chunks.append(sse_event(chunk))
    return chunks + [sse_event(chat_chunk(finish=finish)), sse_event(chat_chunk(choices=False, usage=USAGE)),
                     b"data: [DONE]\n\n"]


def _events(srv, body: dict) -> list:
    """A streamed answer's events, each validated by the SDK's own types (not just constructed)."""
    with httpx.stream("POST", f"{srv.url}/v1/responses", json={**body, "stream": True}) as resp:
        assert resp.status_code == 200
        lines = [line for line in resp.iter_lines() if line.startswith("data: ")]
    events = [EVENT.validate_json(line.removeprefix("data: ")) for line in lines]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    return events


@pytest.mark.parametrize(("item", "param"), [
    ({"role": "user", "content": [{"type": "input_text", "text": None}]}, "input[0].content[0].text"),
    ({"role": "user", "content": [{"type": "input_text", "text": 7}]}, "input[0].content[0].text"),
    ({"type": "function_call_output", "call_id": "call_1", "output": [{"type": "input_text", "text": None}]},
     "input[0].output[0].text"),
])
def test_a_part_whose_text_is_null_or_not_a_string_is_a_400_naming_it(setup, item, param):
    srv, upstream = setup
    with pytest.raises(openai.BadRequestError) as caught:
        _client(srv).responses.create(model="gpt-4o", input=[item])
    assert (caught.value.body["type"], caught.value.body["param"]) == ("invalid_request_error", param)
    assert not upstream.received


@pytest.mark.parametrize(("extra", "param"), [
    ({"input": []}, "input"),
    ({}, "input"),
    ({"input": "hi", "max_output_tokens": "abc"}, "max_output_tokens"),
    ({"input": "hi", "max_output_tokens": -5}, "max_output_tokens"),
    ({"input": "hi", "tools": "x"}, "tools"),
    ({"input": "hi", "instructions": 42}, "instructions"),
])
def test_a_request_the_responses_api_would_refuse_is_a_400_naming_its_field(setup, extra, param):
    srv, upstream = setup
    r = httpx.post(f"{srv.url}/v1/responses", json={"model": "gpt-4o", **extra})
    assert r.status_code == 400, r.text
    assert (r.json()["error"]["type"], r.json()["error"]["param"]) == ("invalid_request_error", param)
    assert not upstream.received


def test_settings_sent_as_null_are_answered_as_their_defaults_and_the_rest_echoed(setup):
    """Frameworks pass ``None`` for settings they leave alone, and the SDK sends it as ``null``:
    the ``response`` echoes the defaults in force, in the shape the SDK's types accept."""
    srv, upstream = setup
    asked = {"model": "gpt-4o", "input": "Hi", "temperature": None, "top_p": None, "parallel_tool_calls": None,
             "tool_choice": None, "tools": None, "metadata": None, "truncation": "auto",
             "reasoning": {"effort": "low", "summary": "auto"}}
    upstream.json(_completion({"content": "Hello"}), times=1)
    answer = RESPONSE.validate_json(httpx.post(f"{srv.url}/v1/responses", json=asked).content)
    assert (answer.temperature, answer.top_p, answer.parallel_tool_calls, answer.tool_choice, answer.tools) == \
        (1.0, 1.0, True, "auto", [])
    assert (answer.truncation, answer.reasoning.effort, answer.reasoning.summary) == ("auto", "low", "auto")
    upstream.sse(_stream([{"content": "Hello"}]), times=1)
    events = _events(srv, asked)
    assert events[0].response.parallel_tool_calls is True and events[-1].response.truncation == "auto"


def test_tool_calls_without_an_index_stay_apart(setup):
    """Gemini's chat streams give tool calls no ``index``: each call comes whole with its own id
    (or its arguments follow in deltas without one), and a turn with calls may finish ``stop``."""
    srv, upstream = setup
    weather = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}
    upstream.sse(_stream([
        {"tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"function": {"arguments": '{"city":"Oslo"}'}}]},
        {"tool_calls": [{"id": "call_b", "type": "function",
                         "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
    ]), times=1)
    with _client(srv).responses.stream(model="gpt-4o", input="Oslo and Rome?", tools=[weather]) as stream:
        final = stream.get_final_response()
    calls = [(item.type, item.call_id, item.name, item.arguments) for item in final.output]
    assert calls == [("function_call", "call_a", "get_weather", '{"city":"Oslo"}'),
                     ("function_call", "call_b", "get_weather", '{"city":"Rome"}')]


def test_a_reasoning_summary_asked_for_is_told_as_one(setup):
    """With ``reasoning.summary`` (as Codex asks), the backend's reasoning comes as the summary
    OpenAI's reasoning models stream (``response.reasoning_summary_*``), which is what such
    clients show; without it, as ``reasoning_text`` content (tested with the lifecycle)."""
    srv, upstream = setup
    asked = {"model": "gpt-4o", "input": "Hi", "reasoning": {"effort": "medium", "summary": "auto"}}
    upstream.sse(_stream([{"reasoning_content": "Greet "}, {"reasoning_content": "back."}, {"content": "Hello"}]),
                 times=1)
    events = _events(srv, asked)
    at = {"item_id": events[2].item.id, "output_index": 0, "summary_index": 0}
    assert [e.type for e in events[2:8]] == [
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done"]
    assert all(e.model_dump(include=set(at)) == at for e in events[3:8])
    assert events[2].item.summary == [] and events[7].part.text == events[6].text == "Greet back."
    assert [e.type for e in events[8:]] == [
        "response.output_item.done", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    upstream.json(_completion({"reasoning_content": "Greet back.", "content": "Hello"}), times=1)
    whole = _client(srv).responses.create(**asked)
    for final in (events[-1].response, whole):
        reasoning = final.output[0]
        assert (reasoning.type, [(s.type, s.text) for s in reasoning.summary], reasoning.content) == \
            ("reasoning", [("summary_text", "Greet back.")], None)
        assert final.output_text == "Hello"


def test_an_in_band_error_with_a_numeric_code_is_told_in_the_sdks_types(setup):
    """vLLM reports a failure mid-stream as ``{"error": {…, "code": 400}}``: the client's
    ``error`` event carries the code as a string, as the Responses API types it (a client
    parsing strictly, as Codex does, would otherwise fail on the event that tells it why)."""
    srv, upstream = setup
    failure = {"error": {"object": "error", "message": "The engine died.", "type": "InternalServerError",
                         "param": None, "code": 500}}
    upstream.sse(_stream([{"content": "Hel"}])[:2] + [sse_event(failure)], times=1)
    events = _events(srv, {"model": "gpt-4o", "input": "Hi"})
    error, failed = events[-2:]
    assert (error.type, error.code, error.message) == ("error", "500", "The engine died.")
    assert failed.type == "response.failed" and failed.response.error.message == "The engine died."


def test_token_limits_estimate_responses_requests(upstream, make_gateway):
    """A TPM limit admits a Responses request by its prompt (``instructions``, tool outputs and
    all) and ``max_output_tokens``, as it does a chat request: not as a 1-token request."""
    gw = make_gateway(access_config(upstream.url, key_a="tpm: 4000", extra="limits: {default_max_tokens: 100}"))
    upstream.json(response_object("Done."))
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY_A, max_retries=0)
    file = "lorem ipsum " * 200  # a file a tool read: 2400 characters, some 600 tokens
    raw = client.responses.with_raw_response.create(
        model="gpt-test", max_output_tokens=300, instructions="word " * 400, input=[
            {"role": "user", "content": "Read it."},
            {"type": "function_call", "call_id": "c1", "name": "read", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": file}])
    reserved = 4000 - int(raw.headers["x-ratelimit-remaining-tokens"])
    assert 300 + 500 + 600 < reserved < 300 + 500 + 600 + 100  # max_output_tokens, the instructions, the tool output
    with pytest.raises(openai.RateLimitError):  # more than the minute's tokens: refused before any backend
        client.responses.create(model="gpt-test", max_output_tokens=5000, input="Hi")
    assert len(upstream.received) == 1


def test_kept_conversations_stay_within_max_bytes():
    """The memory store keeps conversations up to ``responses.max_bytes``: the least recently
    used go first, and one too large for the bound is not kept (nor does it push others out)."""
    with serve("""
backends: {mock: {type: mock, mock: {tokens: 2}}}
models: {mock-gpt: {targets: [{backend: mock}]}}
responses: {max_bytes: 20000}
telemetry: {enabled: false}
""") as srv:
        client = _client(srv)

        def turn(size: int, previous: str | None = None) -> str:  # a continuation keeps nothing (store: false)
            return client.responses.create(model="mock-gpt", input="x" * size, store=previous is None,
                                           **({"previous_response_id": previous} if previous else {})).id

        first, second, third = (turn(8000) for _ in range(3))  # some 8 kB each: the third pushes the first out
        too_large = turn(30000)
        for kept in (second, third):
            assert turn(10, kept)
        for gone in (first, too_large):
            with pytest.raises(openai.BadRequestError) as caught:
                turn(10, gone)
            assert caught.value.body["code"] == "previous_response_not_found"


def test_a_client_that_leaves_mid_stream_drops_the_backend_and_keeps_no_turn(setup):
    srv, upstream = setup
    upstream.sse(_stream([{"content": "word "}] * 40), chunk_delay_s=0.05, times=1)
    body = {"model": "gpt-4o", "input": "Talk.", "stream": True}
    with httpx.stream("POST", f"{srv.url}/v1/responses", json=body) as resp:
        events = (orjson.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: "))
        response_id = next(events)["response"]["id"]  # response.created
        next(e for e in events if e["type"] == "response.output_text.delta")
    wait_for(lambda: upstream.disconnects, what="the backend's connection dropped")
    with pytest.raises(openai.BadRequestError) as caught:
        _client(srv).responses.create(model="gpt-4o", input="Go on.", previous_response_id=response_id)
    assert caught.value.body["code"] == "previous_response_not_found"


def _named(payloads: list[dict]) -> list[bytes]:
    return [b"event: " + p["type"].encode() + b"\ndata: " + orjson.dumps({**p, "sequence_number": n}) + b"\n\n"
            for n, p in enumerate(payloads)]


def test_a_native_turn_ending_in_a_custom_tool_call_has_its_ttft_and_finish_in_the_row(tmp_path, tdb):
    """Codex's ``apply_patch`` is a custom (freeform) tool on OpenAI: a turn may produce nothing but
    its input deltas. The row still has TTFT and inter-token times, and ``tool_calls`` as finish."""
    with FakeUpstream() as upstream, serve(f"""
backends:
  native: {{type: openai, base_url: "{upstream.url}", api_key: sk-backend-secret}}
models:
  gpt-5: {{targets: [{{backend: native}}]}}
""" + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "log")) as srv:
        call = {"id": "ctc_1", "type": "custom_tool_call", "call_id": "call_1", "name": "apply_patch", "input": ""}
        at = {"item_id": "ctc_1", "output_index": 0}
        patch = ["*** Begin Patch\n", "*** Add File: a.txt\n+hi\n", "*** End Patch"]
        done = {**call, "input": "".join(patch), "status": "completed"}
        usage = {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 9,
                 "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 39}
        upstream.sse(_named([
            {"type": "response.created", "response": response_object("", status="in_progress", model="gpt-5")},
            {"type": "response.output_item.added", "output_index": 0, "item": {**call, "status": "in_progress"}},
            *({"type": "response.custom_tool_call_input.delta", **at, "delta": d} for d in patch),
            {"type": "response.custom_tool_call_input.done", **at, "input": "".join(patch)},
            {"type": "response.output_item.done", "output_index": 0, "item": done},
            {"type": "response.completed", "response": {**response_object("", usage, model="gpt-5"),
                                                         "output": [done]}},
        ]), chunk_delay_s=0.01, times=1)
        events = list(openai.OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0).responses.create(
            model="gpt-5", input="Add a.txt", stream=True))
        assert events[-1].response.output[0].input == "".join(patch)
        wait_for(lambda: httpx.get(f"{srv.url}/admin/telemetry").json()["written"] == 1, what="the row")
        flush(srv)
        (row,) = select(tdb, "SELECT * FROM llm_requests")
    assert (row["finish_reason"], row["prompt_tokens"], row["completion_tokens"]) == ("tool_calls", 30, 9)
    assert 0 < row["ttft_ms"] < row["latency_ms"] and row["itl_max_ms"] is not None


PATCH = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch"
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files with a patch.",
               "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/s"}}


def test_custom_tools_reach_a_chat_backend_as_functions_and_come_back_custom(setup):
    """Codex gives GPT-5 models ``apply_patch`` as a custom (freeform) tool. A chat backend gets it
    as a function taking one string, ``input``; its call comes back as a ``custom_tool_call``
    (streamed as ``response.custom_tool_call_input.*``), and the call and its output go back to
    the backend as a tool call and a tool message, kept or sent again."""
    srv, upstream = setup
    shell = {"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}}
    call = {"id": "call_p", "type": "function",
            "function": {"name": "apply_patch", "arguments": orjson.dumps({"input": PATCH}).decode()}}
    upstream.sse(_stream([{"tool_calls": [{"index": 0, **call, "function": {**call["function"], "arguments": ""}}]},
                          {"tool_calls": [{"index": 0, "function": {"arguments": call["function"]["arguments"]}}]}],
                         "tool_calls"), times=1)
    asked = {"model": "gpt-4o", "input": "Add a.txt", "tools": [shell, APPLY_PATCH],
             "tool_choice": {"type": "custom", "name": "apply_patch"}}
    events = _events(srv, asked)
    sent = upstream.last.json()
    assert sent["tools"][1] == {"type": "function", "function": {
        "name": "apply_patch", "description": "Edit files with a patch.",
        "parameters": {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"],
                       "additionalProperties": False}}}
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    assert [e.type for e in events[2:-1]] == [
        "response.output_item.added", "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done",
        "response.output_item.done"]
    assert events[2].item.input == "" and events[3].delta == events[4].input == PATCH
    (item,) = events[-1].response.output
    assert (item.type, item.call_id, item.name, item.input) == ("custom_tool_call", "call_p", "apply_patch", PATCH)

    upstream.json(_completion({"content": None, "tool_calls": [call]}, "tool_calls"), times=1)
    first = _client(srv).responses.create(**asked)
    assert [(i.type, i.input) for i in first.output] == [("custom_tool_call", PATCH)]
    upstream.json(_completion({"content": "Done."}), times=1)
    output = {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Success."}
    _client(srv).responses.create(model="gpt-4o", previous_response_id=first.id, input=[output])
    replayed = [{"role": "user", "content": "Add a.txt"}, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_p", "content": "Success."}]
    assert upstream.last.json()["messages"] == replayed
    upstream.json(_completion({"content": "Done."}), times=1)  # a client that sends the whole history itself
    _client(srv).responses.create(model="gpt-4o", store=False, input=[
        {"role": "user", "content": "Add a.txt"},
        {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": PATCH}, output])
    assert upstream.last.json()["messages"] == replayed


def test_a_completion_without_ids_or_created_still_gives_calls_ids_and_a_time(setup):
    """Some OpenAI-compatible servers leave out the tool calls' ids and ``created``: the calls
    get distinct ids (the client answers each by its ``call_id``) and the response its time."""
    srv, upstream = setup
    answer = _completion({"content": None, "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"type": "function", "function": {"name": "g", "arguments": "{}"}}]}, "tool_calls")
    del answer["created"]
    upstream.json(answer, times=1)
    response = _client(srv).responses.create(model="gpt-4o", input="Go.")
    ids = [item.call_id for item in response.output]
    assert all(ids) and len(set(ids)) == 2 and response.created_at > 1_700_000_000


def test_in_redis_a_tenant_continues_its_conversations_on_any_instance_and_no_other_tenant_can(tmp_path):
    redis = RedisServer(data_dir=str(tmp_path)).start()
    try:
        keys = {"a": "sk-gw-tenant-a-0123456789", "b": "sk-gw-tenant-b-0123456789"}
        config = f"""
backends: {{mock: {{type: mock, mock: {{tokens: 3}}}}}}
models: {{mock-gpt: {{targets: [{{backend: mock}}]}}}}
keys: [{", ".join(f"{{tenant: {t}, sha256: {hashlib.sha256(k.encode()).hexdigest()}}}" for t, k in keys.items())}]
cache: {{store: redis, redis_url: "{redis.url}"}}
telemetry: {{enabled: false}}
"""
        with serve(config) as one, serve(config) as two:
            def ask(srv, tenant: str, **body):
                client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=keys[tenant], max_retries=0)
                return client.responses.create(model="mock-gpt", **body)

            first = ask(one, "a", input="Remember 42.")
            assert ask(two, "a", input="And?", previous_response_id=first.id).previous_response_id == first.id
            for srv in (one, two):
                with pytest.raises(openai.BadRequestError) as caught:
                    ask(srv, "b", input="And?", previous_response_id=first.id)
                assert caught.value.body["code"] == "previous_response_not_found"
    finally:
        redis.stop()


def _hello_with_junk() -> list[bytes]:
    """A stream of 'Hel' + 'lo' with chunks of the wrong shape between (a string delta, a string function,
    a tool call that is no object, a list index)."""
    return _stream([{"content": "Hel"}])[:2] + [
        sse_event({"choices": [{"index": 0, "delta": "junk"}]}),
        sse_event({"choices": [{"index": 0, "delta": {"tool_calls": ["junk", {"index": 0, "function": "junk"}]}}]}),
        sse_event({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": [0], "function": {"arguments": "x"}}]}}]}),
    ] + _stream([{"content": "lo"}])[1:]


def test_chunks_of_the_wrong_shape_are_skipped_not_a_broken_stream(setup):
    """A backend's chunk whose parts have the wrong types (a string ``delta``, a string
    ``function``, a tool call that is no object) is skipped as a chat client skips it: the
    client still gets the rest of the answer and ``response.completed``, never a cut stream."""
    srv, upstream = setup
    upstream.sse(_hello_with_junk(), times=1)
    events = _events(srv, {"model": "gpt-4o", "input": "Hi"})
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "Hello"
    upstream.json({**_completion({"content": "x"}), "choices": {"0": "junk"}}, times=1)
    with pytest.raises(openai.APIStatusError) as no_choice:  # no chat completion: nothing to tell
        _client(srv).responses.create(model="gpt-4o", input="Hi")
    assert no_choice.value.status_code == 502


def test_messages_streams_skip_chunks_of_the_wrong_shape_too(setup):
    """The same chunks through ``/v1/messages``'s encoder (the Anthropic SDK as the client)."""
    import anthropic

    srv, upstream = setup
    upstream.sse(_hello_with_junk(), times=1)
    client = anthropic.Anthropic(base_url=srv.url, api_key="x", max_retries=0)
    with client.messages.stream(model="gpt-4o", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]) as stream:
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["text"] and final.content[0].text == "Hello"
