"""Pass-through paths stay inside the backend's API.

A request to ``/v1/{endpoint}`` goes to ``{base_url}/{endpoint}`` with the backend's own key,
so a path that climbs out of ``/v1/`` must never be forwarded. The attacks are sent with a
raw-socket client (HTTP client libraries normalise ``..`` away before sending) to a gateway in
front of the recording fake upstream, which must receive nothing.
"""

from __future__ import annotations

import hashlib

import httpx
import openai
import orjson
import pytest

from gateway.core.errors import NotFoundError
from gateway.proxy.paths import BaseURL
from tests.support.gateway import gateway_config
from tests.support.raw_http import raw_request

KEY = "sk-gw-path-tenant-0123456789abcdef"
BODY = orjson.dumps({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})
CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}

ATTACKS = [
    "/v1/../../internal/x",
    "/v1/../admin",
    "/v1/foo/../../x",
    "/v1/foo/../../../x",
    "/v1/./chat/completions",
    "/v1/chat/./completions",
    "/v1/%2e%2e/%2e%2e/internal/x",
    "/v1/%2E%2E/%2E%2E/internal/x",
    "/v1/%2e./internal",
    "/v1/.%2E/internal",
    "/v1/..%2f..%2finternal/x",
    "/v1/..%2F..%2Finternal/x",
    "/v1/chat%2fcompletions",
    "/v1/..%5c..%5cinternal",
    "/v1/..\\..\\internal",
    "/v1/chat\\completions",
    "/v1/x/%252e%252e/%252e%252e/internal",
    "/v1/chat//completions",
    "/v1/chat/completions/",
    "/v1//chat/completions",
    "/v1/chat/completions%00",
    "/v1/chat/completions%0d%0aX-Injected:%20yes",
    "/v1/chat/completions%7F",
    "/v1/chat%3fcompletions",
    "/v1/chat%23completions",
    "/v1/foo/../../internal/x?x=1",
    "http://attacker.example/v1/../../internal/x",
    # dot segments with ";" parameters: Tomcat, Jetty and Spring drop the parameter, then climb
    "/v1/audio/..;/files",
    "/v1/audio/..;x=1/..;/internal",
    "/v1/images/.;/files",
    "/v1/audio/..%3b/files",
    "/v1/audio/..%3B/..%3B/internal",
    # escapes that legacy decoders or Unicode folding (NFKC) read as "." or "/"
    "/v1/audio/%c0%ae%c0%ae/files",
    "/v1/audio/%C0%AE%C0%AE%C0%AF%C0%AE%C0%AEinternal",
    "/v1/audio/%e2%80%a4%e2%80%a4/files",
    "/v1/audio/%ef%bc%8e%ef%bc%8e/files",
    "/v1/audio%ef%bc%8ffiles",
    "/v1/audio%ef%bc%bc..%ef%bc%bcfiles",
    "/v1/audio/%ff",
]


def _keys_config(upstream_url: str) -> str:
    return gateway_config(upstream_url, extra=f"""
telemetry: {{enabled: false}}
keys:
  - {{tenant: t, sha256: {hashlib.sha256(KEY.encode()).hexdigest()}, endpoints: ["*"]}}
""")


def _assert_refused(gw, upstream, target: str, headers: dict | None = None) -> None:
    r = raw_request(gw.url, "POST", target, BODY, {"Content-Type": "application/json", **(headers or {})})
    assert r.status == 404, (target, r.status, r.body)
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}, target
    assert err["type"] == "invalid_request_error" and err["code"] == "unknown_url", (target, err)
    assert "Invalid URL" in err["message"] and r.headers["x-request-id"], target
    assert not upstream.received, (target, [(x.method, x.path) for x in upstream.received])


@pytest.mark.parametrize("mode", ["none", "keys"])
def test_paths_leaving_v1_answer_404_and_reach_no_upstream(upstream, make_gateway, mode):
    upstream.json(CHAT)
    if mode == "none":
        gw = make_gateway(gateway_config(upstream.url, extra="telemetry: {enabled: false}\n"))
        headers = {}
    else:  # a tenant with a valid key that may use any endpoint and the body's model
        gw = make_gateway(_keys_config(upstream.url))
        headers = {"Authorization": f"Bearer {KEY}"}
    for target in ATTACKS:
        _assert_refused(gw, upstream, target, headers)
    # The same connection style and key reach the backend on a clean path.
    ok = raw_request(gw.url, "POST", "/v1/chat/completions", BODY, {"Content-Type": "application/json", **headers})
    assert ok.status == 200 and ok.json()["choices"][0]["message"]["content"] == "hello"
    assert [(x.method, x.path) for x in upstream.received] == [("POST", "/v1/chat/completions")]


def test_clean_paths_query_strings_and_absolute_form_are_forwarded(upstream, make_gateway):
    upstream.json({"id": "resp_1", "object": "response", "status": "completed", "model": "up-model", "output": []})
    gw = make_gateway(_keys_config(upstream.url))
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    body = orjson.dumps({"model": "gpt-test", "input": "hi"})
    # The objects the paths name are the tenant's (adopted: made outside the gateway).
    adopted = httpx.post(f"{gw.url}/admin/objects", json={"tenant": "t", "ids": ["file-abc", "thread_1:run@2",
                                                                                "café;v=1"]}, timeout=30)
    assert adopted.status_code == 200
    for target, path, query in [
        ("/v1/responses?x=1&q=a%26b", "/v1/responses", "x=1&q=a%26b"),
        ("/v1/files/file-abc/content", "/v1/files/file-abc/content", ""),
        ("/v1/threads/thread_1:run@2/messages", "/v1/threads/thread_1:run@2/messages", ""),
        ("/v1/a.b/v1.2-c_d~e", "/v1/a.b/v1.2-c_d~e", ""),
        ("/v1/files/caf%C3%A9;v=1/...", "/v1/files/café;v=1/...", ""),
        (f"{gw.url}/v1/responses", "/v1/responses", ""),
    ]:
        n = len(upstream.received)
        r = raw_request(gw.url, "POST", target, body, auth)
        assert r.status == 200, (target, r.body)
        got = upstream.received[n:]
        assert len(got) == 1 and got[0].path == path, (target, got)
        assert got[0].json()["model"] == "up-model" and got[0].headers["Authorization"] == "Bearer sk-backend-secret"
        if query:  # the client's query string goes upstream as it was encoded
            assert got[0].query == "x=1&q=a%26b", got[0].query
    # The official SDK, for the endpoints a client normally uses.
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY, max_retries=0)
    upstream.json(CHAT)
    assert client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}],
                                          extra_query={"tag": "a b"}).choices[0].message.content == "hello"
    assert upstream.last.path == "/v1/chat/completions" and upstream.last.query.startswith("tag=a")


def test_upstream_urls_never_leave_the_base_url_prefix():
    base = BaseURL("http://backend.internal:8000/tenant-a/v1/")
    assert str(base.join("chat/completions")) == "http://backend.internal:8000/tenant-a/v1/chat/completions"
    assert str(base.join("responses", "x=1&q=a%26b")) == \
        "http://backend.internal:8000/tenant-a/v1/responses?x=1&q=a%26b"
    for path in ("../admin", "../../x", "a/../../x", "%2e%2e/x", "%2E%2E/%2e%2e/x", "a%2F..%2F..%2Fx",
                 "a%2f..", "a%5c..%5cx", "a\\..\\x", "%252e%252e/x", "..;/x", "a/..;/..;/x", "a/.%3B/x"):
        with pytest.raises(NotFoundError) as info:
            base.join(path)
        assert info.value.status == 404 and info.value.code == "unknown_url", path
    root = BaseURL("http://backend.internal:8000")
    assert str(root.join("v1/chat/completions")) == "http://backend.internal:8000/v1/chat/completions"


def test_a_backend_address_built_from_config_cannot_leave_base_url(upstream, make_gateway):
    """The guard holds where the URL is built, whatever an adapter produced: an Azure deployment
    name that would climb out of the resource's prefix is refused before anything is sent."""
    root = upstream.url.removesuffix("/v1")
    gw = make_gateway(f"""
telemetry: {{enabled: false}}
backends:
  az:
    type: azure
    base_url: {root}/az
    api_key: az-backend-key
    api_version: "2024-10-21"
models:
  escape:
    targets: [{{backend: az, model: "../../../admin"}}]
""")
    upstream.json(CHAT)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="escape", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "unknown_url"
    assert not upstream.received
