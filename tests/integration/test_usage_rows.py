"""Tokens and cost in the rows for every endpoint that reports usage (issue 20 §4).

Each request goes through the gateway with the official OpenAI SDK to a fake backend that
reports usage in its endpoint's own shape; its row in chDB must carry the tokens as reported
(cached, cache writes, reasoning in their own columns; 0 stays 0, absent stays NULL) and the
cost at each kind of token's own rate, the config's prices winning over the shipped table.
"""

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

MSG = [{"role": "user", "content": "hi"}]
KEY = "sk-gw-usage-rows-0123456789abcdef"  # a key: uploads are taken only from callers with one


def _config(openai_url: str, anthropic_url: str) -> str:
    return f"""
backends:
  up: {{type: openai, base_url: "{openai_url}", api_key: sk-up}}
  claude: {{type: anthropic, base_url: "{anthropic_url}", api_key: sk-ant}}
models:
  o3-mini: {{targets: [{{backend: up}}]}}
  gpt-4o: {{targets: [{{backend: up}}]}}
  house-chat: {{targets: [{{backend: up, model: gpt-4o-mini}}]}}
  local: {{targets: [{{backend: up, model: my-local-llm}}]}}
  text-embedding-3-small: {{targets: [{{backend: up}}]}}
  gpt-image-1: {{targets: [{{backend: up}}]}}
  sonnet: {{targets: [{{backend: claude, model: claude-sonnet-4-20250514}}]}}
  gpt-4o-transcribe: {{targets: [{{backend: up}}]}}
passthrough:
  - {{path: "files*", backend: up}}
  - {{path: "vector_stores*", backend: up}}
keys:
  - {{tenant: t, sha256: {hashlib.sha256(KEY.encode()).hexdigest()}, endpoints: ["*"]}}
pricing:
  models:
    gpt-4o: {{input: 1.0, output: 2.0, cached_input: 0.5}}
    house-chat: {{input: 7.0, output: 9.0}}
    gpt-image-1: {{input: 5.0, output: 40.0}}
    gpt-4o-transcribe: {{input: 2.5, output: 10.0, input_audio: 6.0}}
"""


@pytest.fixture
def env(tmp_path, tdb):
    with FakeUpstream() as up, FakeUpstream() as claude:
        with serve(_config(up.url, claude.url) + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "log")) as srv:
            yield srv, up, claude


def _rows(srv, tdb, n: int) -> dict[str, dict]:
    wait_for(lambda: httpx.get(f"{srv.url}/admin/telemetry").json()["written"] >= n, what=f"{n} records")
    flush(srv)
    rows = select(tdb, "SELECT * FROM llm_requests")
    assert len(rows) == n
    return {r["client_request_id"]: r for r in rows}


def _chat(model: str, usage: dict) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": usage}


def _tokens(row: dict) -> tuple:
    return (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"], row["cached_tokens"],
            row["cache_write_tokens"], row["reasoning_tokens"], row["tokens_estimated"])


def test_every_endpoint_gets_its_reported_tokens_and_cost(env, tdb):
    srv, up, claude = env
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=KEY, max_retries=0)

    def rid(name: str) -> dict:
        return {"extra_headers": {"x-request-id": name}}

    # Chat with cached and reasoning tokens (reasoning is part of the completion: billed once).
    reasoning = {"prompt_tokens": 1000, "completion_tokens": 300, "total_tokens": 1300,
                 "prompt_tokens_details": {"cached_tokens": 400, "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 200, "audio_tokens": 0}}
    up.json(_chat("o3-mini-2025-01-31", reasoning), times=1)
    raw = client.chat.completions.with_raw_response.create(model="o3-mini", messages=MSG, **rid("reasoning"))
    assert orjson.loads(raw.content)["usage"] == reasoning  # relayed as sent, the zeros included
    assert raw.parse().usage.completion_tokens_details.reasoning_tokens == 200

    # A stream whose usage reports 0 cached tokens and no completion details.
    zero = {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22, "prompt_tokens_details": {"cached_tokens": 0}}
    up.sse([sse_event(chat_chunk("o", model="gpt-4o-2024-08-06")),
            sse_event(chat_chunk(finish="stop", model="gpt-4o-2024-08-06")),
            sse_event(chat_chunk(choices=False, usage=zero, model="gpt-4o-2024-08-06")), b"data: [DONE]\n\n"], times=1)
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MSG, stream=True,
                                                 stream_options={"include_usage": True}, **rid("stream")))
    assert chunks[-1].usage.model_dump(exclude_none=True) == zero

    # The public name's configured price wins over the shipped price of the model served.
    up.json(_chat("gpt-4o-mini-2024-07-18", {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}),
            times=1)
    client.chat.completions.create(model="house-chat", messages=MSG, **rid("house"))

    # Text completions, and a model without a price.
    up.json({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "my-local-llm",
             "choices": [{"index": 0, "text": "ok", "finish_reason": "stop", "logprobs": None}],
             "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}, times=1)
    client.completions.create(model="local", prompt="x", **rid("completion"))

    up.json({"object": "list", "model": "text-embedding-3-small",
             "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
             "usage": {"prompt_tokens": 8, "total_tokens": 8}}, times=1)
    assert client.embeddings.create(model="text-embedding-3-small", input="hello", **rid("embedding")).usage \
        .prompt_tokens == 8

    image_usage = {"input_tokens": 50, "output_tokens": 4160, "total_tokens": 4210,
                   "input_tokens_details": {"text_tokens": 50, "image_tokens": 0}}
    up.json({"created": 1, "data": [{"b64_json": "aGk="}], "usage": image_usage}, times=1)
    image = client.images.generate(model="gpt-image-1", prompt="a cat", **rid("image"))
    assert image.usage.output_tokens == 4160

    # An Anthropic backend: cache reads and writes are part of the prompt, each at its own rate.
    claude.json({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
                 "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
                 "usage": {"input_tokens": 100, "cache_read_input_tokens": 1000,
                           "cache_creation_input_tokens": 2000, "output_tokens": 50}}, times=1)
    client.chat.completions.create(model="sonnet", messages=MSG, **rid("anthropic"))

    # An upload (a multipart form) reports usage too; a GET on a file has no model to price.
    up.json({"text": "hi", "usage": {"type": "tokens", "input_tokens": 120, "output_tokens": 15, "total_tokens": 135,
                                     "input_token_details": {"audio_tokens": 100, "text_tokens": 20}}}, times=1)
    client.audio.transcriptions.create(file=("a.wav", b"RIFF....", "audio/wav"), model="gpt-4o-transcribe",
                                       **rid("transcription"))
    up.json({"id": "file-abc", "object": "file", "bytes": 3, "created_at": 1, "filename": "b.jsonl",
             "purpose": "batch", "status": "processed"}, times=1)
    _adopt(srv, "file-abc")
    client.files.retrieve("file-abc", **rid("file"))

    rows = _rows(srv, tdb, 9)
    r = rows["reasoning"]
    assert _tokens(r) == (1000, 300, 1300, 400, None, 200, 0)
    assert r["cost_usd"] == pytest.approx((600 * 1.10 + 400 * 0.55 + 300 * 4.40) / 1e6)  # the shipped o3-mini
    s = rows["stream"]
    assert _tokens(s) == (20, 2, 22, 0, None, None, 0)
    assert s["cost_usd"] == pytest.approx((20 * 1.0 + 2 * 2.0) / 1e6)  # the config's gpt-4o, not the table's
    assert rows["house"]["cost_usd"] == pytest.approx((100 * 7.0 + 10 * 9.0) / 1e6)
    c = rows["completion"]
    assert _tokens(c) == (5, 1, 6, None, None, None, 0) and c["cost_usd"] is None and c["status_code"] == 200
    e = rows["embedding"]
    assert _tokens(e) == (8, 0, 8, None, None, None, 0) and e["cost_usd"] == pytest.approx(8 * 0.02 / 1e6)
    i = rows["image"]
    assert (i["endpoint"], _tokens(i)) == ("images/generations", (50, 4160, 4210, None, None, None, 0))
    assert i["cost_usd"] == pytest.approx((50 * 5.0 + 4160 * 40.0) / 1e6)
    a = rows["anthropic"]
    assert _tokens(a) == (3100, 50, 3150, 1000, 2000, None, 0)
    assert a["cost_usd"] == pytest.approx((100 * 3.0 + 1000 * 0.30 + 2000 * 3.75 + 50 * 15.0) / 1e6)
    t = rows["transcription"]
    assert (t["endpoint"], t["model_requested"], _tokens(t)) == \
        ("audio/transcriptions", "gpt-4o-transcribe", (120, 15, 135, None, None, None, 0))
    assert t["cost_usd"] == pytest.approx((20 * 2.5 + 100 * 6.0 + 15 * 10.0) / 1e6)  # audio at its own rate
    f = rows["file"]
    assert (f["endpoint"], f["model_requested"], f["status_code"], f["cost_usd"]) == ("files/file-abc", "", 200, None)
    assert _tokens(f) == (0, 0, 0, None, None, None, 0)  # no model: nothing estimated, nothing to bill
    # Only the answered request of a model without a price is unpriced; the file has no model.
    resp = httpx.post(f"{srv.url}/admin/query", json={"saved": "cost-by-tenant-daily", "format": "jsonl"}, timeout=60)
    assert [orjson.loads(line)["unpriced"] for line in resp.content.splitlines()] == [1]


def _event(payload: dict, named: bool = False) -> bytes:
    name = b"event: " + payload["type"].encode() + b"\n" if named else b""
    return name + b"data: " + orjson.dumps(payload) + b"\n\n"


def test_streamed_transcriptions_and_images_report_their_usage(env, tdb):
    srv, up, _ = env
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=KEY, max_retries=0)
    usage = {"type": "tokens", "input_tokens": 120, "output_tokens": 15, "total_tokens": 135}
    events = [_event({"type": "transcript.text.delta", "delta": "Hel"}),
              _event({"type": "transcript.text.delta", "delta": "lo"}),
              _event({"type": "transcript.text.done", "text": "Hello", "usage": usage})]
    up.sse(events, times=1)
    stream = client.audio.transcriptions.create(file=("a.wav", b"RIFF....", "audio/wav"), model="gpt-4o-transcribe",
                                                stream=True, extra_headers={"x-request-id": "transcription"})
    got = list(stream)
    assert [e.type for e in got] == ["transcript.text.delta", "transcript.text.delta", "transcript.text.done"]
    assert got[-1].usage.output_tokens == 15

    image_usage = {"input_tokens": 50, "output_tokens": 272, "total_tokens": 322,
                   "input_tokens_details": {"text_tokens": 50, "image_tokens": 0}}
    up.sse([_event({"type": "image_generation.partial_image", "b64_json": "aGk=", "partial_image_index": 0,
                    "created_at": 1, "size": "1024x1024", "quality": "low", "background": "opaque",
                    "output_format": "png"}, named=True),
            _event({"type": "image_generation.completed", "b64_json": "aGk=", "created_at": 1, "size": "1024x1024",
                    "quality": "low", "background": "opaque", "output_format": "png", "usage": image_usage},
                   named=True)], times=1)
    images = list(client.images.generate(model="gpt-image-1", prompt="a cat", stream=True, partial_images=1,
                                         extra_headers={"x-request-id": "image"}))
    assert images[-1].type == "image_generation.completed"

    up.sse(events[:2], times=1)  # cut before its final event: the client is told in-band
    r = httpx.post(f"{srv.url}/v1/images/generations", json={"model": "gpt-image-1", "prompt": "x", "stream": True},
                   headers={"Authorization": f"Bearer {KEY}", "x-request-id": "cut"}, timeout=30)
    assert orjson.loads(r.content.rstrip().rsplit(b"\n\n", 1)[-1][6:])["error"]["code"] == "stream_truncated"

    rows = _rows(srv, tdb, 3)
    t = rows["transcription"]
    assert (t["stream"], _tokens(t), t["status_code"]) == (True, (120, 15, 135, None, None, None, 0), 200)
    assert t["cost_usd"] == pytest.approx((120 * 2.5 + 15 * 10.0) / 1e6) and t["ttft_ms"] is not None
    i = rows["image"]
    assert (i["stream"], _tokens(i)) == (True, (50, 272, 322, None, None, None, 0))
    assert i["cost_usd"] == pytest.approx((50 * 5.0 + 272 * 40.0) / 1e6)
    assert (rows["cut"]["status_code"], rows["cut"]["truncated"]) == (502, True)


def _adopt(srv, object_id: str) -> None:
    """An object stored at the backend outside the gateway, adopted for the key's tenant."""
    assert httpx.post(f"{srv.url}/admin/objects", json={"tenant": "t", "ids": [object_id]}, timeout=30).status_code \
        == 200


def test_a_request_that_names_no_model_logs_no_params(env, tdb):
    # Its body is no inference request: any field may be content (a search query, a message).
    srv, up, _ = env
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=KEY, max_retries=0)
    _adopt(srv, "vs_1")
    up.json({"object": "vector_store.search_results.page", "search_query": ["x"], "data": [], "has_more": False,
             "next_page": None}, times=1)
    client.vector_stores.search("vs_1", query="my private words", max_num_results=3,
                                extra_headers={"x-request-id": "search"})
    assert up.last.json() == {"query": "my private words", "max_num_results": 3}
    up.json(_chat("gpt-4o", {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}), times=1)
    client.chat.completions.create(model="gpt-4o", messages=MSG, temperature=0.5, extra_headers={"x-request-id": "chat"})
    rows = _rows(srv, tdb, 2)
    assert (rows["search"]["endpoint"], rows["search"]["params"]) == ("vector_stores/vs_1/search", "")
    assert rows["chat"]["params"] == '{"temperature":0.5}'
