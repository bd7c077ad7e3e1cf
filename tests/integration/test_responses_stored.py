"""Stored responses of translated turns, with the official openai SDK: ``responses.retrieve``,
``responses.input_items.list`` (order, limit, ``after``: the SDK's own pagination),
``responses.delete`` and ``responses.cancel`` on answers the gateway built from a chat-only
backend — per tenant, under the key's ``endpoints``, in memory and in Redis shared by two
instances; ids the gateway did not keep go on to ``passthrough:``'s backend (the tenant's own only)."""

from __future__ import annotations

import hashlib

import httpx
import openai
import orjson
import pytest

from gateway.cache.conversations import key
from gateway.cache.entry import JSON, CacheEntry
from tests.support.fake_upstream import FakeUpstream, chat_chunk, sse_event
from tests.support.gateway import serve
from tests.support.redis_server import RedisServer

KEYS = {"a": "sk-gw-tenant-a-0123456789", "b": "sk-gw-tenant-b-0123456789", "plain": "sk-gw-plain-0123456789ab"}
USAGE = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
COMPLETION = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000, "model": "up-model",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "Oslo is cold."},
                           "finish_reason": "stop"}], "usage": USAGE}
INPUT = [{"role": "developer", "content": "Answer in one line."},
         {"type": "message", "id": "msg_client_1", "role": "user",
          "content": [{"type": "input_text", "text": "Weather in Oslo?"}]},
         {"role": "user", "content": "Be brief."}]


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _config(upstream_url: str, extra: str = "", backends: str = "") -> str:
    """``gpt-4o`` on a chat-only backend; tenants a and b may read and delete responses, the
    ``plain`` key has the default (inference) endpoints only."""
    return f"""
backends:
  chat: {{type: openai, base_url: "{upstream_url}", api_key: sk-backend-secret, responses: translate}}
{backends}
models:
  gpt-4o: {{targets: [{{backend: chat, model: up-model}}]}}
keys:
  - {{tenant: a, sha256: {_sha(KEYS["a"])}, endpoints: [default, "responses/*"]}}
  - {{tenant: b, sha256: {_sha(KEYS["b"])}, endpoints: [default, "responses/*"]}}
  - {{tenant: plain, sha256: {_sha(KEYS["plain"])}}}
telemetry: {{enabled: false}}
{extra}"""


def _client(srv, tenant: str = "a") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key=KEYS[tenant], max_retries=0)


@pytest.fixture
def setup():
    with FakeUpstream() as upstream, serve(_config(upstream.url)) as srv:
        upstream.json(COMPLETION)
        yield srv, upstream


def test_a_kept_response_is_retrieved_listed_and_refused_cancelling_as_openai_answers(setup):
    srv, upstream = setup
    client = _client(srv)
    created = client.responses.create(model="gpt-4o", instructions="Be kind.", input=INPUT, metadata={"k": "v"})
    got = client.responses.retrieve(created.id)
    assert got.model_dump() == created.model_dump()
    assert (got.status, got.output_text, got.usage.total_tokens, got.metadata) == ("completed", "Oslo is cold.", 13,
                                                                                   {"k": "v"})

    items = client.responses.input_items.list(created.id)  # newest first, as OpenAI lists them
    assert [(i.type, i.role, [c.text for c in i.content]) for i in items.data] == [
        ("message", "user", ["Be brief."]), ("message", "user", ["Weather in Oslo?"]),
        ("message", "developer", ["Answer in one line."])]
    ids = [i.id for i in items.data]
    assert len(set(ids)) == 3 and ids[1] == "msg_client_1"  # the client's id kept, new ones for the others
    assert all(i.id.startswith("msg_") and i.status == "completed" for i in items.data)
    assert (items.first_id, items.last_id, items.has_more) == (ids[0], ids[-1], False)
    first = client.responses.input_items.list(created.id, order="asc", limit=1)
    assert ([i.id for i in first.data], first.has_more) == ([ids[-1]], True)
    # the SDK follows ``after`` from page to page
    assert [i.id for i in client.responses.input_items.list(created.id, order="asc", limit=2)] == ids[::-1]
    for query, param in (({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"order": "up"}, "order"),
                         ({"after": "msg_nope"}, "after"), ({"stream": "true"}, "stream")):
        path = "/input_items" if param != "stream" else ""
        r = httpx.get(f"{srv.url}/v1/responses/{created.id}{path}", params=query,
                      headers={"Authorization": f"Bearer {KEYS['a']}"})
        assert (r.status_code, r.json()["error"]["type"], r.json()["error"]["param"]) == \
            (400, "invalid_request_error", param)

    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.cancel(created.id)
    assert caught.value.body["type"] == "invalid_request_error" and "background" in caught.value.body["message"]
    assert client.responses.retrieve(created.id).status == "completed"  # still there, unchanged

    streamed = client.responses.create(model="gpt-4o", input="Again?", previous_response_id=created.id)
    assert client.responses.retrieve(streamed.id).previous_response_id == created.id
    assert [i.content[0].text for i in client.responses.input_items.list(streamed.id)] == ["Again?"]  # this turn's
    assert {r.path for r in upstream.received} == {"/v1/chat/completions"}  # nothing else reached the backend


def test_a_streamed_turn_is_kept_as_its_final_response(setup):
    srv, upstream = setup
    chunks = [sse_event(chat_chunk(role=True)), sse_event(chat_chunk("Hel")), sse_event(chat_chunk("lo")),
              sse_event(chat_chunk(finish="stop")), sse_event(chat_chunk(choices=False, usage=USAGE)),
              b"data: [DONE]\n\n"]
    upstream.sse(chunks, times=1)
    client = _client(srv)
    with client.responses.stream(model="gpt-4o", input="Hi") as stream:
        final = stream.get_final_response()
    got = client.responses.retrieve(final.id)
    assert (got.output_text, got.usage.total_tokens) == ("Hello", 13)
    assert got.model_dump(exclude={"output"}) == final.model_dump(exclude={"output"})


def test_delete_removes_it_for_retrieve_and_previous_response_id(setup):
    srv, _ = setup
    client = _client(srv)
    kept = client.responses.create(model="gpt-4o", input="Hi")
    r = httpx.delete(f"{srv.url}/v1/responses/{kept.id}", headers={"Authorization": f"Bearer {KEYS['a']}"})
    assert (r.status_code, r.json()) == (200, {"id": kept.id, "object": "response", "deleted": True})
    for call in (lambda: client.responses.retrieve(kept.id), lambda: client.responses.delete(kept.id),
                 lambda: client.responses.input_items.list(kept.id), lambda: client.responses.cancel(kept.id)):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert caught.value.body["type"] == "invalid_request_error" and kept.id in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="gpt-4o", input="And?", previous_response_id=kept.id)
    assert refused.value.body["code"] == "previous_response_not_found"

    other = client.responses.create(model="gpt-4o", input="Hi")
    assert client.responses.delete(other.id) is None  # the SDK's own call
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(other.id)


def test_another_tenant_store_false_and_keys_without_the_endpoint_get_nothing(setup):
    srv, upstream = setup
    kept = _client(srv).responses.create(model="gpt-4o", input="Hi")
    other = _client(srv, "b")
    for call in (lambda: other.responses.retrieve(kept.id), lambda: other.responses.input_items.list(kept.id),
                 lambda: other.responses.delete(kept.id), lambda: other.responses.cancel(kept.id)):
        with pytest.raises(openai.NotFoundError):
            call()
    assert _client(srv).responses.retrieve(kept.id).id == kept.id  # b's delete removed nothing
    unkept = _client(srv).responses.create(model="gpt-4o", input="Hi", store=False)
    with pytest.raises(openai.NotFoundError):
        _client(srv).responses.retrieve(unkept.id)
    plain = _client(srv, "plain")  # the default endpoints: inference only, as before
    for call in (lambda: plain.responses.retrieve(kept.id), lambda: plain.responses.delete(kept.id),
                 lambda: plain.responses.cancel(kept.id)):
        with pytest.raises(openai.PermissionDeniedError) as caught:
            call()
        assert caught.value.body["code"] == "endpoint_not_allowed"
    assert httpx.get(f"{srv.url}/v1/responses/{kept.id}").status_code == 401
    assert {r.path for r in upstream.received} == {"/v1/chat/completions"}


def _adopt(srv, tenant: str, response_id: str) -> None:
    """A response stored outside the gateway (at the backend, or kept by an older gateway),
    adopted for ``tenant``: until then it is nobody's (docs/access.md, Stored objects)."""
    r = httpx.post(f"{srv.url}/admin/objects", json={"tenant": tenant, "ids": [response_id]}, timeout=30)
    assert r.status_code == 200, r.text


def test_ids_the_gateway_did_not_keep_go_on_to_the_passthrough_backend():
    with FakeUpstream() as upstream, serve(_config(upstream.url, 'passthrough: [{path: "responses/*", backend: native}]',
                                                   f'  native: {{type: openai, base_url: "{upstream.url}"}}')) as srv:
        upstream.json(COMPLETION, times=1)
        client = _client(srv)
        kept = client.responses.create(model="gpt-4o", input="Hi")
        assert client.responses.retrieve(kept.id).output_text == "Oslo is cold."
        assert len(upstream.received) == 1  # answered here
        _adopt(srv, "a", "resp_native_1")
        upstream.json({"id": "resp_native_1", "object": "response", "status": "completed", "output": []})
        assert client.responses.retrieve("resp_native_1").id == "resp_native_1"
        assert (upstream.last.method, upstream.last.path) == ("GET", "/v1/responses/resp_native_1")
        n = len(upstream.received)
        with pytest.raises(openai.NotFoundError):  # not b's: not there for b, and the backend is not asked
            _client(srv, "b").responses.retrieve(kept.id)
        assert len(upstream.received) == n
        client.responses.cancel("resp_native_1")
        assert (upstream.last.method, upstream.last.path) == ("POST", "/v1/responses/resp_native_1/cancel")


def test_in_redis_two_instances_serve_a_tenants_kept_responses_and_no_other_tenant(tmp_path):
    redis = RedisServer(data_dir=str(tmp_path)).start()
    try:
        with FakeUpstream() as upstream:
            upstream.json(COMPLETION)
            config = _config(upstream.url, f'cache: {{store: redis, redis_url: "{redis.url}"}}\n')
            with serve(config) as one, serve(config) as two:
                kept = _client(one).responses.create(model="gpt-4o", input=INPUT)
                assert _client(two).responses.retrieve(kept.id).model_dump() == kept.model_dump()
                assert [i.id for i in _client(two).responses.input_items.list(kept.id, order="asc")] == \
                    [i.id for i in _client(one).responses.input_items.list(kept.id, order="asc")]
                for srv in (one, two):
                    with pytest.raises(openai.NotFoundError):
                        _client(srv, "b").responses.retrieve(kept.id)
                _client(two).responses.delete(kept.id)
                assert redis.client().keys("llm-gateway:responses:*") == []
                with pytest.raises(openai.NotFoundError):
                    _client(one).responses.retrieve(kept.id)
                with pytest.raises(openai.BadRequestError):
                    _client(one).responses.create(model="gpt-4o", input="And?", previous_response_id=kept.id)
                # a conversation kept as a bare list (before responses were kept whole) still continues
                old = CacheEntry(JSON, "responses", orjson.dumps([{"role": "user", "content": "Hi"}]))
                redis.client().set(key("a", "resp_old", "v1"), old.encode())
                _adopt(one, "a", "resp_old")
                assert _client(two).responses.create(model="gpt-4o", input="And?",
                                                     previous_response_id="resp_old").output_text
                assert upstream.last.json()["messages"][0] == {"role": "user", "content": "Hi"}
                with pytest.raises(openai.NotFoundError):
                    _client(two).responses.retrieve("resp_old")
    finally:
        redis.stop()


def test_a_streamed_response_is_found_the_moment_its_stream_ends(tmp_path):
    # A stream's id is recorded for its tenant once the stream has ended, after the client may
    # already hold it from the last event. Writes to the ledger's Redis held back for 0.6 s
    # (CLIENT PAUSE … WRITE; reads go on) make that moment long: a retrieve asked at once waits
    # for the record instead of answering 404.
    chunks = [sse_event(chat_chunk("Hi")), sse_event(chat_chunk(finish="stop")),
              sse_event(chat_chunk(choices=False, usage=USAGE)), b"data: [DONE]\n\n"]
    redis = RedisServer(data_dir=str(tmp_path)).start()
    try:
        with FakeUpstream() as upstream, \
                serve(_config(upstream.url, f'limits: {{redis_url: "{redis.url}"}}\n')) as srv:
            client = _client(srv)
            upstream.sse(chunks, times=1)
            with client.responses.stream(model="gpt-4o", input="Warm up") as stream:
                stream.get_final_response()  # (a first stream can outlast the pause)
            upstream.sse(chunks, times=1)
            redis.client().execute_command("CLIENT", "PAUSE", 600, "WRITE")
            with client.responses.stream(model="gpt-4o", input="Hi") as stream:
                final = stream.get_final_response()
            assert client.responses.retrieve(final.id).output_text == "Hi"
            with pytest.raises(openai.NotFoundError):  # still another tenant's
                _client(srv, "b").responses.retrieve(final.id)
    finally:
        redis.stop()
