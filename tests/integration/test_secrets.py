"""The canary scan: traffic with canary provider, client and admin keys of every kind (answers,
streams, 401/403/429, upstream errors, unreachable backends, failing plugins, config reloads),
then every log line, every ClickHouse row (both tables, bodies logged) and every admin response
is searched for the canaries. None may appear anywhere; nor may an ``Authorization`` value."""

from __future__ import annotations

import hashlib
import logging
import re

import httpx
import openai
import orjson
import pytest

from gateway.proxy.server import free_port
from tests.support.fake_upstream import chat_chunk, sse_event
from tests.support.telemetry import chdb_client, chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml, wait_for  # noqa: F401

# Canaries that no key-shaped regular expression would catch: only exact hygiene keeps them out.
PROVIDER = "canaryPROVIDER9f3b1c7e5d2a"
PROVIDER_HEADER = "canaryHEADERVALUE71c0d9e4"
CLIENT = "canaryCLIENTKEY4e8a2f6b0c1d"
CLIENT_UNKNOWN = "canaryUNKNOWNKEY8d3c5b7a9e"
ADMIN = "canaryADMINKEY2b9d4f6a8c0e"
CANARIES = (PROVIDER, PROVIDER_HEADER, CLIENT, CLIENT_UNKNOWN, ADMIN)
MSG = [{"role": "user", "content": "hello"}]
CHAT = {"id": "c1", "object": "chat.completion", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


class Exploding:
    """A plugin whose failure message carries the request's Authorization header."""

    async def before_request(self, ctx):
        if ctx.body.get("explode"):
            raise RuntimeError(f"cannot handle {ctx.headers.get('Authorization')}")


def config(upstream_url: str, tdb: str, spool) -> str:
    dead = free_port()
    return f"""
server: {{admin_key: {ADMIN}}}
backends:
  fake:
    type: openai
    base_url: {upstream_url}
    api_key: {PROVIDER}
    headers: {{x-provider-secret: {PROVIDER_HEADER}}}
  dead:
    type: openai
    base_url: http://127.0.0.1:{dead}/v1
    api_key: {PROVIDER}
    timeouts: {{connect: 0.5}}
models:
  gpt-test: {{targets: [{{backend: fake, model: up-model}}]}}
  gone: {{targets: [{{backend: dead}}]}}
keys:
  - {{tenant: canary-team, sha256: {hashlib.sha256(CLIENT.encode()).hexdigest()}, rpm: 100, tpm: 100000,
      budget_usd: {{day: 100}}, models: ["gpt-*", "gone"]}}
plugins:
  - {{path: "tests.integration.test_secrets:Exploding", on_error: reject}}
{telemetry_yaml(chdb_dsn(), tdb, spool, extra="  bodies: {request: true, response: true}")}
"""


def test_canary_keys_never_leak(upstream, make_gateway, tmp_path, tdb, caplog):
    caplog.set_level(logging.DEBUG)
    gw = make_gateway(config(upstream.url, tdb, tmp_path / "spool"))
    seen: list[str] = []  # everything a client or an admin got back

    def keep(r: httpx.Response) -> httpx.Response:
        seen.append(str(r.status_code) + " " + str(dict(r.headers)) + " " + r.text)
        return r

    def call(key: str | None, body: dict, header: str = "Authorization", path: str = "chat/completions"):
        headers = {header: (f"Bearer {key}" if header == "Authorization" else key)} if key else {}
        return keep(httpx.post(f"{gw.url}/v1/{path}", json=body, headers=headers, timeout=30))

    # 1. answers: JSON, stream, embeddings-shaped pass-through, key in each accepted header
    upstream.json(CHAT)
    assert call(CLIENT, {"model": "gpt-test", "messages": MSG}).status_code == 200
    assert call(CLIENT, {"model": "gpt-test", "messages": MSG}, header="api-key").status_code == 200
    assert call(CLIENT, {"model": "gpt-test", "messages": MSG}, header="x-api-key").status_code == 200
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=CLIENT, max_retries=0)
    upstream.sse([sse_event(chat_chunk("hi")), sse_event(chat_chunk(finish="stop")),
                  sse_event(chat_chunk(choices=False, usage={"prompt_tokens": 1, "completion_tokens": 1,
                                                             "total_tokens": 2})), b"data: [DONE]\n\n"], times=1)
    assert "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="gpt-test", messages=MSG, stream=True) if c.choices) == "hi"
    # 2. rejections: unknown key, no key, model not allowed, rate limits
    assert call(CLIENT_UNKNOWN, {"model": "gpt-test", "messages": MSG}).status_code == 401
    assert call(CLIENT_UNKNOWN, {"model": "gpt-test", "messages": MSG}, header="x-api-key").status_code == 401
    assert call(None, {"model": "gpt-test", "messages": MSG}).status_code == 401
    assert call(CLIENT, {"model": "mock-nope", "messages": MSG}).status_code == 404  # no such model
    assert call(CLIENT, {"model": "gpt-test", "messages": MSG, "max_tokens": 10**6}).status_code == 429
    assert keep(httpx.get(f"{gw.url}/v1/models", headers={"Authorization": f"Bearer {CLIENT_UNKNOWN}"})).status_code == 401
    keep(httpx.get(f"{gw.url}/v1/models", headers={"Authorization": f"Bearer {CLIENT}"}))
    # 3. failures: upstream errors (one complaining about the key), an unreachable backend,
    #    a broken stream, a plugin that fails with the Authorization header in its exception
    upstream.json({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                             "code": "invalid_api_key"}}, status=401, times=1)
    assert call(CLIENT, {"model": "gpt-test", "messages": MSG}).status_code == 401
    upstream.json(b"<html>bad gateway</html>", status=502, times=1)
    call(CLIENT, {"model": "gpt-test", "messages": MSG})
    assert call(CLIENT, {"model": "gone", "messages": MSG}).status_code == 502
    upstream.sse([sse_event(chat_chunk("partial"))], abort_after=1, times=1)
    keep(httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG, "stream": True},
                    headers={"Authorization": f"Bearer {CLIENT}"}))
    assert call(CLIENT, {"model": "gpt-test", "messages": MSG, "explode": True}).status_code == 503
    # 4. admin: wrong keys, then every GET route and the rows through the query endpoint
    good = {"Authorization": f"Bearer {ADMIN}"}
    for bad in (CLIENT, CLIENT_UNKNOWN, "nope"):
        assert keep(httpx.get(f"{gw.url}/admin/access", headers={"Authorization": f"Bearer {bad}"})).status_code == 401
    assert keep(httpx.post(f"{gw.url}/admin/telemetry/flush", headers=good, timeout=30)).json()["flushed"]
    for route in gw.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/admin") and route.method == "GET" and "{" not in path:
            assert keep(httpx.get(f"{gw.url}{path}", headers=good, timeout=30)).status_code == 200, path
    for table in ("llm_requests", "llm_attempts"):
        r = keep(httpx.post(f"{gw.url}/admin/query", headers=good, timeout=30,
                            json={"sql": f"SELECT * FROM {table}", "format": "jsonl"}))
        assert r.status_code == 200, r.text
    bad_sql = keep(httpx.post(f"{gw.url}/admin/query", headers=good, timeout=30,
                              json={"sql": "SELECT * FROM nowhere_table"}))
    assert bad_sql.status_code == 400

    # every row, read straight from the store
    def rows():
        c = chdb_client(tdb)
        try:
            got = c.raw_query("SELECT * FROM llm_requests FORMAT JSONEachRow").decode()
            return got if got.count("\n") >= 14 else None
        finally:
            c.close()

    requests_rows = wait_for(rows, what="the rows")
    c = chdb_client(tdb)
    try:
        attempt_rows = c.raw_query("SELECT * FROM llm_attempts FORMAT JSONEachRow").decode()
    finally:
        c.close()
    assert "canary-team" in requests_rows and "key-" in requests_rows  # rows do identify the caller
    assert all(r.headers["Authorization"] == f"Bearer {PROVIDER}" and r.headers["x-provider-secret"] == PROVIDER_HEADER
               for r in upstream.received)  # the canaries were in play
    logs = "\n".join(f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "plugin Exploding before_request failed (RuntimeError)" in logs
    seen_text = "\n".join(seen)
    for name, text in (("log lines", logs), ("llm_requests rows", requests_rows), ("llm_attempts rows", attempt_rows),
                       ("client/admin responses", seen_text)):
        for canary in CANARIES:
            assert canary not in text, f"{canary} leaked into {name}"
        assert not re.search(r"Bearer (?!YOUR_KEY\)|<server\.admin_key>)\S", text), f"an Authorization value in {name}"


def test_config_and_objects_never_show_secrets(upstream):
    from gateway.config import parse_config

    snap = parse_config(f"""
server: {{admin_key: {ADMIN}}}
backends:
  fake: {{type: openai, base_url: {upstream.url}, api_key: {PROVIDER}, headers: {{x-provider-secret: {PROVIDER_HEADER}}}}}
keys:
  - {{tenant: t, sha256: {hashlib.sha256(CLIENT.encode()).hexdigest()}}}
limits: {{redis_url: "redis://:{PROVIDER}@127.0.0.1:1/0"}}
""")
    from gateway.admin.public_config import public_config

    text = repr(snap.config) + str(snap.config) + orjson.dumps(public_config(snap.config)).decode()
    for canary in CANARIES:
        assert canary not in text
    assert hashlib.sha256(CLIENT.encode()).hexdigest() not in text
    with pytest.raises(Exception) as info:
        parse_config(f"keys:\n  - {{tenant: t, sha256: {CLIENT}}}\n")
    assert CLIENT not in str(info.value)
    assert orjson.dumps(str(info.value)).decode().count("canary") == 0
