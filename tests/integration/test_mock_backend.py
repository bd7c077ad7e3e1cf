"""The ``mock`` backend behaves like OpenAI's API, seen through the gateway with the OpenAI SDK.

``n`` choices, tool calls and structured output valid against the request's JSON Schemas,
logprobs, base64 embeddings, OpenAI's 400s, unique ids, one timing model for streamed and
non-streamed answers, and embeddings without chat delays.
"""

from __future__ import annotations

import base64
import json
import struct
import time

import httpx
import jsonschema
import openai
import pytest

from gateway.providers.mock.json_instance import instance

CONFIG = """
backends:
  mock: {type: mock, mock: {tokens: 5, chunk_tokens: 2}}
  timed: {type: mock, mock: {ttft_ms: 200, itl_ms: 150, tokens: 6, chunk_tokens: 2}}
  coarse: {type: mock, mock: {ttft_ms: 1500, itl_ms: 1500, tokens: 4, chunk_tokens: 4, embedding_dims: 16}}
  late: {type: mock, mock: {latency_ms: 300, tokens: 2}}
models:
  mock-gpt: {targets: [{backend: mock}]}
  timed-gpt: {targets: [{backend: timed}]}
  coarse-gpt: {targets: [{backend: coarse}]}
  late-gpt: {targets: [{backend: late}]}
telemetry: {enabled: false}
"""
MSG = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 3},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "when": {"type": "string", "format": "date"},
        "where": {"$ref": "#/$defs/place"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "uniqueItems": True},
        "detailed": {"type": "boolean"},
        "note": {"type": ["string", "null"]},
    },
    "required": ["city", "unit", "days", "when", "where", "tags"],
    "additionalProperties": False,
    "$defs": {"place": {"type": "object", "properties": {"lat": {"type": "number", "exclusiveMinimum": -90,
                                                                   "maximum": 90},
                                                          "kind": {"const": "point"}},
                        "required": ["lat", "kind"], "additionalProperties": False}},
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": {
        "type": "object", "properties": {"tz": {"type": "string", "enum": ["UTC", "CET"]}}, "required": ["tz"]}}},
    {"type": "function", "function": {"name": "ping"}},  # no parameters at all
]


@pytest.fixture
def gw(make_gateway):
    return make_gateway(CONFIG)


def sdk(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key="sk-client", max_retries=0, timeout=30)


def valid(value, schema) -> None:
    jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker())


# --- n ---------------------------------------------------------------------------------------------
def test_n_gives_n_choices_streamed_with_their_indexes(gw):
    client = sdk(gw)
    one = client.chat.completions.create(model="mock-gpt", messages=MSG)
    resp = client.chat.completions.create(model="mock-gpt", messages=MSG, n=3)
    assert [c.index for c in resp.choices] == [0, 1, 2]
    texts = [c.message.content for c in resp.choices]
    assert texts[0] == one.choices[0].message.content and len(set(texts)) == 3  # distinct, first as n=1
    assert resp.usage.completion_tokens == 3 * one.usage.completion_tokens == 15
    assert [c.message.content for c in client.chat.completions.create(model="mock-gpt", messages=MSG, n=3).choices] \
        == texts  # deterministic

    parts: dict[int, str] = {}
    finishes = {}
    chunks = list(client.chat.completions.create(model="mock-gpt", messages=MSG, n=3, stream=True,
                                                 stream_options={"include_usage": True}))
    for chunk in chunks:
        for choice in chunk.choices:
            parts[choice.index] = parts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert [parts[i] for i in range(3)] == texts and finishes == {0: "stop", 1: "stop", 2: "stop"}
    assert chunks[-1].usage.completion_tokens == 15 and len({c.id for c in chunks}) == 1

    legacy = client.completions.create(model="mock-gpt", prompt="Say hi", n=2)
    assert [c.index for c in legacy.choices] == [0, 1] and legacy.choices[0].text != legacy.choices[1].text


# --- tools -----------------------------------------------------------------------------------------
def test_a_whole_answer_ends_stop_and_one_the_cap_cut_ends_length(gw):
    """The mock's words are its whole answer: ``stop`` (a Responses client sees a completed
    turn); ``length`` only when the request's max tokens cut it."""
    client = sdk(gw)
    assert client.chat.completions.create(model="mock-gpt", messages=MSG).choices[0].finish_reason == "stop"
    assert client.completions.create(model="mock-gpt", prompt="hi").choices[0].finish_reason == "stop"
    cut = client.chat.completions.create(model="mock-gpt", messages=MSG, max_tokens=3).choices[0]
    assert cut.finish_reason == "length" and len(cut.message.content.split()) == 3
    with client.responses.stream(model="mock-gpt", input="hi") as stream:
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text
    assert client.responses.create(model="mock-gpt", input="hi", max_output_tokens=2).status == "incomplete"


def test_tool_call_arguments_are_valid_for_the_tool_schema(gw):
    client = sdk(gw)
    resp = client.chat.completions.create(model="mock-gpt", messages=MSG, tools=TOOLS)  # auto: the first tool
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    valid(json.loads(call.function.arguments), WEATHER)

    named = client.chat.completions.create(model="mock-gpt", messages=MSG, tools=TOOLS,
                                           tool_choice={"type": "function", "function": {"name": "get_time"}})
    args = json.loads(named.choices[0].message.tool_calls[0].function.arguments)
    assert named.choices[0].message.tool_calls[0].function.name == "get_time" and args == {"tz": "UTC"}
    ping = client.chat.completions.create(model="mock-gpt", messages=MSG, tools=TOOLS,
                                          tool_choice={"type": "function", "function": {"name": "ping"}})
    assert ping.choices[0].message.tool_calls[0].function.arguments == "{}"

    none = client.chat.completions.create(model="mock-gpt", messages=MSG, tools=TOOLS, tool_choice="none")
    assert none.choices[0].message.tool_calls is None and none.choices[0].message.content

    # auto after a tool result: the model answers in words, so an agent loop ends
    history = MSG + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": call.id, "type": "function", "function": {"name": call.function.name,
                                                         "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    after = client.chat.completions.create(model="mock-gpt", messages=history, tools=TOOLS)
    assert after.choices[0].message.tool_calls is None and after.choices[0].message.content
    required = client.chat.completions.create(model="mock-gpt", messages=history, tools=TOOLS,
                                              tool_choice="required")
    assert required.choices[0].finish_reason == "tool_calls"

    many = client.chat.completions.create(model="mock-gpt", messages=MSG, tools=TOOLS, n=3)
    ids = [c.message.tool_calls[0].id for c in many.choices] + [call.id]
    assert len(set(ids)) == 4  # call ids are unique
    for c in many.choices:
        valid(json.loads(c.message.tool_calls[0].function.arguments), WEATHER)


def test_streamed_tool_call_assembles_to_valid_arguments(gw):
    chunks = list(sdk(gw).chat.completions.create(model="mock-gpt", messages=MSG, tools=TOOLS, stream=True,
                                                  tool_choice="required", n=2))
    calls: dict[int, dict] = {}
    finishes = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or ():
                call = calls.setdefault(choice.index, {"id": None, "name": None, "arguments": ""})
                call["id"] = delta.id or call["id"]
                call["name"] = (delta.function.name if delta.function else None) or call["name"]
                call["arguments"] += (delta.function.arguments or "") if delta.function else ""
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert finishes == {0: "tool_calls", 1: "tool_calls"}
    assert {c["name"] for c in calls.values()} == {"get_weather"} and calls[0]["id"] != calls[1]["id"]
    for call in calls.values():
        valid(json.loads(call["arguments"]), WEATHER)


# --- structured output -----------------------------------------------------------------------------
def test_json_schema_and_json_object_answers_are_valid(gw):
    client = sdk(gw)
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "strict": True, "schema": WEATHER}}
    resp = client.chat.completions.create(model="mock-gpt", messages=MSG, response_format=fmt)
    assert resp.choices[0].finish_reason == "stop"
    valid(json.loads(resp.choices[0].message.content), WEATHER)
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="mock-gpt", messages=MSG, response_format=fmt, stream=True) if c.choices)
    assert streamed == resp.choices[0].message.content

    cut = client.chat.completions.create(model="mock-gpt", messages=MSG, response_format=fmt, max_tokens=3)
    assert cut.choices[0].finish_reason == "length" and len(cut.choices[0].message.content) == 12  # 3 tokens
    assert resp.choices[0].message.content.startswith(cut.choices[0].message.content)
    call = client.chat.completions.create(model="mock-gpt", messages=MSG, tools=TOOLS, max_completion_tokens=2)
    assert call.choices[0].finish_reason == "length"
    assert len(call.choices[0].message.tool_calls[0].function.arguments) == 8  # 2 tokens

    obj = client.chat.completions.create(model="mock-gpt", response_format={"type": "json_object"},
                                         messages=[{"role": "user", "content": "Answer in JSON."}])
    assert isinstance(json.loads(obj.choices[0].message.content), dict)
    with pytest.raises(openai.BadRequestError) as info:  # the API asks for the word JSON in the messages
        client.chat.completions.create(model="mock-gpt", messages=MSG, response_format={"type": "json_object"})
    assert info.value.body["param"] == "messages"


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"a": {"anyOf": [{"type": "integer", "multipleOf": 5, "minimum": 7},
                                                      {"type": "null"}]}}, "required": ["a"]},
    {"type": "array", "prefixItems": [{"type": "number", "exclusiveMaximum": 0}, {"type": "string", "maxLength": 2}],
     "minItems": 2},
    {"allOf": [{"type": "object", "properties": {"x": {"type": "boolean"}}, "required": ["x"]},
               {"properties": {"y": {"type": "string", "format": "email"}}, "required": ["y"]}]},
    {"type": "object", "properties": {"items": {"type": "array", "items": {"$ref": "#/definitions/item"}}},
     "required": ["items"], "definitions": {"item": {"type": "object", "properties": {
         "id": {"type": "string", "format": "uuid"}, "at": {"type": "string", "format": "date-time"}},
         "required": ["id", "at"]}}},
    {"type": "integer", "exclusiveMinimum": 3, "exclusiveMaximum": 5},
])
def test_schema_instances_are_valid(schema):
    valid(instance(schema, ["alpha", "beta"], 3), schema)


@pytest.mark.parametrize("schema", [
    {"type": "array", "minItems": 10**9}, {"type": "string", "minLength": 10**9},
    {"$defs": {"n": {"type": "object", "properties": {"a": {"$ref": "#/$defs/n"}, "b": {"$ref": "#/$defs/n"}},
                     "required": ["a", "b"]}}, "$ref": "#/$defs/n"},
    {"$ref": 5}, {"$ref": "#/nope"}, {"allOf": [{"$ref": "#"}]}, {"anyOf": "x"}, {"type": 5}, {"items": [1, 2]},
    {"properties": {"a": 5}, "required": ["a"]}, {"type": "number", "multipleOf": 0, "minimum": "x"},
])
def test_absurd_schemas_get_an_answer_quickly(gw, schema):
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    resp = sdk(gw).chat.completions.create(model="mock-gpt", messages=MSG, response_format=fmt)
    json.loads(resp.choices[0].message.content)  # some JSON, at once: no schema makes the mock build forever


# --- logprobs --------------------------------------------------------------------------------------
def test_logprobs_have_openais_shape(gw):
    client = sdk(gw)
    resp = client.chat.completions.create(model="mock-gpt", messages=MSG, logprobs=True, top_logprobs=3)
    content = resp.choices[0].logprobs.content
    assert "".join(t.token for t in content) == resp.choices[0].message.content and len(content) == 5
    for t in content:
        assert t.logprob < 0 and bytes(t.bytes).decode() == t.token and len(t.top_logprobs) == 3
        assert t.top_logprobs[0].token == t.token
        assert all(isinstance(alt.logprob, float) and alt.bytes == list(alt.token.encode()) for alt in t.top_logprobs)
    plain = client.chat.completions.create(model="mock-gpt", messages=MSG)
    assert plain.choices[0].logprobs is None

    streamed = [t for c in client.chat.completions.create(model="mock-gpt", messages=MSG, logprobs=True, stream=True)
                if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in content]
    assert all(t.top_logprobs == [] for t in streamed)

    legacy = client.completions.create(model="mock-gpt", prompt="Say hi", logprobs=2)
    lp = legacy.choices[0].logprobs
    assert "".join(lp.tokens) == legacy.choices[0].text and len(lp.token_logprobs) == len(lp.tokens)
    assert all(len(top) == 2 for top in lp.top_logprobs) and lp.text_offset[0] == 0


# --- embeddings ------------------------------------------------------------------------------------
def test_base64_embeddings_are_little_endian_float32(gw):
    client = sdk(gw)
    floats = client.embeddings.create(model="coarse-gpt", input=["one", "two"], encoding_format="float")
    assert [len(d.embedding) for d in floats.data] == [16, 16]
    decoded = client.embeddings.create(model="coarse-gpt", input=["one", "two"])  # the SDK asks for base64
    for f, d in zip(floats.data, decoded.data):
        assert d.embedding == pytest.approx(f.embedding, abs=1e-6)
    raw = client.embeddings.with_raw_response.create(model="coarse-gpt", input="one")
    assert json.loads(raw.http_response.request.content)["encoding_format"] == "base64"
    item = json.loads(raw.http_response.content)["data"][0]
    assert isinstance(item["embedding"], str)
    values = struct.unpack("<16f", base64.b64decode(item["embedding"]))
    assert list(values) == pytest.approx(floats.data[0].embedding, abs=1e-6)
    explicit = client.embeddings.create(model="coarse-gpt", input="one", encoding_format="base64")
    assert explicit.data[0].embedding == item["embedding"]  # asked for explicitly, the SDK leaves it encoded
    sized = client.embeddings.create(model="coarse-gpt", input="one", dimensions=100, encoding_format="float")
    assert len(sized.data[0].embedding) == 100


# --- errors and ids --------------------------------------------------------------------------------
@pytest.mark.parametrize("body, param, code", [
    ({"messages": []}, "messages", "empty_array"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "invalid_value"),
    ({"messages": MSG, "n": 0}, "n", "integer_below_minimum"),
    ({"messages": MSG, "n": 129}, "n", "integer_above_maximum"),
    ({"messages": MSG, "logprobs": True, "top_logprobs": 21}, "top_logprobs", "invalid_value"),
    ({"messages": MSG, "top_logprobs": 2}, "top_logprobs", "invalid_value"),
    ({"messages": MSG, "tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice", None),
    ({"messages": MSG, "tool_choice": "auto"}, "tool_choice", None),
    ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
    ({"messages": MSG, "temperature": 5}, "temperature", "decimal_above_maximum"),
    ({"messages": MSG, "temperature": -1}, "temperature", "decimal_below_minimum"),
])
def test_malformed_requests_get_openais_400(gw, body, param, code):
    raw = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "mock-gpt", **body}, timeout=30)
    assert raw.status_code == 400
    error = raw.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    with pytest.raises(openai.BadRequestError):
        sdk(gw).chat.completions.create(model="mock-gpt", stream=True, **body)


def test_embedding_requests_the_api_refuses(gw):
    for body, param in (({}, "input"), ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
                        ({"input": "x", "dimensions": 0}, "dimensions")):
        with pytest.raises(openai.BadRequestError) as info:
            sdk(gw).embeddings.create(model="mock-gpt", **{"input": None, **body})
        assert info.value.body["param"] == param and info.value.body["type"] == "invalid_request_error"


def test_role_error_names_the_role_and_stream_requests_get_json(gw):
    with pytest.raises(openai.BadRequestError) as info:
        sdk(gw).chat.completions.create(model="mock-gpt", stream=True,
                                        messages=[MSG[0], {"role": "robot", "content": "x"}])
    assert "'robot'" in info.value.message and info.value.body["param"] == "messages[1].role"


def test_every_response_has_its_own_id_but_the_same_content(gw):
    client = sdk(gw)
    a = client.chat.completions.create(model="mock-gpt", messages=MSG)
    b = client.chat.completions.create(model="mock-gpt", messages=MSG)
    assert a.id != b.id and a.id.startswith("chatcmpl-")
    assert a.choices[0].message.content == b.choices[0].message.content
    streams = [list(client.chat.completions.create(model="mock-gpt", messages=MSG, stream=True)) for _ in range(2)]
    ids = [{c.id for c in s} for s in streams]
    assert all(len(i) == 1 for i in ids) and ids[0] != ids[1] and a.id not in ids[0] | ids[1]
    legacy = [client.completions.create(model="mock-gpt", prompt="x").id for _ in range(2)]
    assert legacy[0] != legacy[1] and legacy[0].startswith("cmpl-")


# --- timing ----------------------------------------------------------------------------------------
def test_streamed_and_non_streamed_timing_follow_one_model(gw):
    client = sdk(gw)
    # timed: TTFT 0.2 s, then 0.15 s before each of the 2 later chunks (6 tokens, 2 per chunk)
    t0 = time.perf_counter()
    arrivals = [time.perf_counter() - t0 for c in client.chat.completions.create(
        model="timed-gpt", messages=MSG, stream=True) if c.choices and c.choices[0].delta.content]
    assert len(arrivals) == 3
    for k, at in enumerate(arrivals):
        assert at >= 0.2 + 0.15 * k - 0.01, arrivals
    t0 = time.perf_counter()
    client.chat.completions.create(model="timed-gpt", messages=MSG)
    assert time.perf_counter() - t0 >= 0.2 + 0.15 * 2 - 0.01  # the whole stream's time

    # coarse: one 4-token chunk, so a non-streamed answer waits TTFT only, never ITL per token
    t0 = time.perf_counter()
    client.chat.completions.create(model="coarse-gpt", messages=MSG)
    elapsed = time.perf_counter() - t0
    assert 1.5 - 0.01 <= elapsed < 4.0, elapsed  # per-token ITL would make it 6 s


def test_embeddings_do_not_wait_for_chat_delays(gw):
    t0 = time.perf_counter()
    sdk(gw).embeddings.create(model="coarse-gpt", input="fast")
    assert time.perf_counter() - t0 < 3.0  # chat delays would make it 6 s


def test_latency_ms_delays_every_answer(gw):
    client = sdk(gw)
    for call in (lambda: client.embeddings.create(model="late-gpt", input="x"),
                 lambda: client.chat.completions.create(model="late-gpt", messages=MSG)):
        t0 = time.perf_counter()
        call()
        assert time.perf_counter() - t0 >= 0.3 - 0.01
    t0 = time.perf_counter()
    with client.chat.completions.create(model="late-gpt", messages=MSG, stream=True) as stream:
        first = next(c for c in stream if c.choices and c.choices[0].delta.content)
        assert first and time.perf_counter() - t0 >= 0.3 - 0.01  # before the first chunk
