"""Keys name the endpoints they may use: inference paths by default, account and server-admin
paths (files, batches, fine-tuning, vLLM's LoRA loading, anything unlisted) only when listed.

Clients are the official OpenAI SDK and plain HTTP against a gateway in front of the recording
fake upstream; a refused path must never reach it.
"""

from __future__ import annotations

import hashlib

import httpx
import openai
import pytest
import yaml
from click.testing import CliRunner

from gateway.cli.commands import main
from gateway.config import ConfigError, parse_config
from tests.support.gateway import gateway_config

KEY_CHAT = "sk-gw-ep-chat-0123456789abcdef"   # no `endpoints`: the default set
KEY_OPS = "sk-gw-ep-ops-0123456789abcdefg"    # default plus account paths
KEY_EMB = "sk-gw-ep-emb-0123456789abcdefgh"   # embeddings only
MSG = [{"role": "user", "content": "hi"}]
CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
EMB = {"object": "list", "model": "up-model", "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}],
       "usage": {"prompt_tokens": 1, "total_tokens": 1}}
# Account-level and server-admin paths, each with a `model` the key may use in its body.
DENIED = ["files", "files/file-abc/content", "batches", "batches/batch_1/cancel", "fine_tuning/jobs",
          "fine_tuning/jobs/ftjob-1/cancel", "load_lora_adapter", "unload_lora_adapter", "assistants",
          "vector_stores", "realtime/sessions", "uploads", "tokenize", "chat/completions/extra",
          "Chat/Completions"]


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def endpoints_config(upstream_url: str, extra_key: str = "", extra: str = "") -> str:
    return gateway_config(upstream_url, extra=f"""
telemetry: {{enabled: false}}
keys:
  - {{tenant: chat, sha256: {sha(KEY_CHAT)}, models: ["gpt-*"]{', ' + extra_key if extra_key else ''}}}
  - {{tenant: ops, sha256: {sha(KEY_OPS)}, endpoints: [default, "/v1/files*", "batches*", "fine_tuning/*"]}}
  - {{tenant: emb, sha256: {sha(KEY_EMB)}, endpoints: [embeddings]}}
{extra}""")


def sdk(gw, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def post(gw, key: str | None, endpoint: str, body: dict | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{gw.url}/v1/{endpoint}", json=body or {"model": "gpt-test", "purpose": "x"},
                      headers=headers, timeout=30)


def assert_endpoint_denied(r: httpx.Response, endpoint: str) -> None:
    assert r.status_code == 403, (endpoint, r.status_code, r.text)
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["code"] == "endpoint_not_allowed", err
    assert f"/v1/{endpoint}" in err["message"] and "endpoints" in err["message"]
    assert r.headers["x-request-id"]


def test_default_key_reaches_inference_endpoints_only(upstream, make_gateway):
    gw = make_gateway(endpoints_config(upstream.url))
    client = sdk(gw, KEY_CHAT)
    upstream.json(CHAT)
    assert client.chat.completions.create(model="gpt-test", messages=MSG).choices[0].message.content == "hello"
    assert client.completions.create(model="gpt-test", prompt="hi").id
    upstream.json(EMB)
    assert client.embeddings.create(model="gpt-test", input="hi").data[0].embedding == [0.1]
    upstream.json({"id": "resp_1", "object": "response", "status": "completed", "model": "up-model", "output": []})
    assert client.responses.create(model="gpt-test", input="hi").id == "resp_1"
    upstream.json({"id": "modr-1", "model": "up-model", "results": []})
    assert client.moderations.create(model="gpt-test", input="hi").id == "modr-1"
    upstream.json({"created": 1, "data": [{"url": "https://example.com/a.png"}]})
    assert client.images.generate(model="gpt-test", prompt="a cat").data[0].url
    upstream.json(CHAT)  # /v1/messages is translated to chat completions for an OpenAI-type backend
    assert post(gw, KEY_CHAT, "messages", {"model": "gpt-test", "max_tokens": 5, "messages": MSG}).status_code == 200
    assert post(gw, KEY_CHAT, "audio/speech", {"model": "gpt-test", "input": "hi", "voice": "alloy"}).status_code == 200
    assert [r.path for r in upstream.received] == [
        "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/moderations",
        "/v1/images/generations", "/v1/chat/completions", "/v1/audio/speech"]
    # The gateway's own /v1 routes are not forwarded and stay available.
    assert [m.id for m in client.models.list()] == ["gpt-test"]


def test_default_key_gets_403_for_account_and_admin_paths_and_nothing_goes_upstream(upstream, make_gateway):
    gw = make_gateway(endpoints_config(upstream.url))
    upstream.json({"ok": True})
    for endpoint in DENIED:
        assert_endpoint_denied(post(gw, KEY_CHAT, endpoint), endpoint)
    # Through the SDK: fine-tuning, batches (with a `model` smuggled in) and vLLM's LoRA loading.
    client = sdk(gw, KEY_CHAT)
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.fine_tuning.jobs.create(model="gpt-test", training_file="file-abc")
    assert info.value.body["code"] == "endpoint_not_allowed"
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.batches.create(completion_window="24h", endpoint="/v1/chat/completions", input_file_id="file-1",
                              extra_body={"model": "gpt-test"})
    assert info.value.body["code"] == "endpoint_not_allowed"
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.post("/load_lora_adapter", cast_to=httpx.Response,
                    body={"model": "gpt-test", "lora_name": "x", "lora_path": "/tmp/x"})
    assert info.value.body["code"] == "endpoint_not_allowed"
    # The path is checked before the model: a denied path with a forbidden model says "endpoint".
    assert_endpoint_denied(post(gw, KEY_CHAT, "files", {"model": "mock-gpt"}), "files")
    assert not upstream.received


def test_listed_endpoints_are_forwarded_and_a_narrow_list_narrows(upstream, make_gateway):
    gw = make_gateway(endpoints_config(upstream.url))
    upstream.json({"ok": True})
    # (The objects the paths name are the tenant's: adopted, as made outside the gateway.)
    assert httpx.post(f"{gw.url}/admin/objects", json={"tenant": "ops", "ids": ["file-abc", "batch_1"]},
                      timeout=30).status_code == 200
    for endpoint in ("files", "files/file-abc/content", "batches", "batches/batch_1/cancel", "fine_tuning/jobs"):
        r = post(gw, KEY_OPS, endpoint)
        assert r.status_code == 200, (endpoint, r.text)
        assert upstream.last.path == f"/v1/{endpoint}"
        assert upstream.last.headers["Authorization"] == "Bearer sk-backend-secret"
    # `default` in the list keeps the inference endpoints; what is not listed stays denied.
    upstream.json(CHAT)
    assert sdk(gw, KEY_OPS).chat.completions.create(model="gpt-test", messages=MSG).id == "chatcmpl-1"
    n = len(upstream.received)
    assert_endpoint_denied(post(gw, KEY_OPS, "load_lora_adapter"), "load_lora_adapter")
    assert_endpoint_denied(post(gw, KEY_OPS, "fine_tuning"), "fine_tuning")  # "fine_tuning/*" only
    # A key listing only embeddings loses chat.
    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk(gw, KEY_EMB).chat.completions.create(model="gpt-test", messages=MSG)
    assert info.value.body["code"] == "endpoint_not_allowed"
    assert len(upstream.received) == n
    upstream.json(EMB)
    assert sdk(gw, KEY_EMB).embeddings.create(model="gpt-test", input="hi").data[0].embedding == [0.1]
    # /admin/access shows each key's endpoints in force.
    keys = {k["tenant"]: k for k in httpx.get(f"{gw.url}/admin/access").json()["keys"]}
    assert keys["chat"]["endpoints"] == ["chat/completions", "completions", "embeddings", "responses", "messages",
                                         "messages/count_tokens", "moderations", "audio/*", "images/*"]
    assert keys["ops"]["endpoints"][0] == "chat/completions" and "files*" in keys["ops"]["endpoints"]
    assert keys["emb"]["endpoints"] == ["embeddings"]


def test_denied_endpoints_use_no_rate_limit(upstream, make_gateway):
    gw = make_gateway(endpoints_config(upstream.url, extra_key="rpm: 1"))
    upstream.json(CHAT)
    for _ in range(3):
        assert_endpoint_denied(post(gw, KEY_CHAT, "batches"), "batches")
    assert sdk(gw, KEY_CHAT).chat.completions.create(model="gpt-test", messages=MSG).id == "chatcmpl-1"
    with pytest.raises(openai.RateLimitError):
        sdk(gw, KEY_CHAT).chat.completions.create(model="gpt-test", messages=MSG)
    assert len(upstream.received) == 1


def test_without_keys_every_clean_path_is_forwarded(upstream, gateway):
    upstream.json({"ok": True})
    assert post(gateway, None, "fine_tuning/jobs").status_code == 200
    assert upstream.last.path == "/v1/fine_tuning/jobs"


def test_endpoints_config_errors_and_cli_option(upstream, make_gateway):
    bad = endpoints_config(upstream.url, extra_key='endpoints: ["chat/completions", "  "]')
    with pytest.raises(ConfigError) as info:
        parse_config(bad)
    assert "keys[0].endpoints" in str(info.value) and "path glob below /v1/" in str(info.value)
    out = CliRunner().invoke(main, ["keys", "create", "--tenant", "team-z", "--endpoints", "default, files*"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    key = lines[0].split(": ", 1)[1]
    entry_text = "\n".join(lines[2:])
    assert yaml.safe_load(entry_text)[0]["endpoints"] == ["default", "files*"]
    gw = make_gateway(gateway_config(upstream.url, extra="telemetry: {enabled: false}\nkeys:\n" + entry_text))
    upstream.json({"ok": True})
    assert post(gw, key, "files").status_code == 200
    assert_endpoint_denied(post(gw, key, "batches"), "batches")
