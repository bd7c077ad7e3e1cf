"""Virtual keys, tenants, RPM/TPM/concurrency/budget limits (in process), admin auth, the CLI.

Every gateway here runs in front of the scriptable fake upstream with the official OpenAI SDK as
the client; telemetry is off (the canary scan in ``test_secrets.py`` covers the rows).
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import openai
import orjson
import pytest
import yaml

from gateway.access.auth import warn_if_open
from gateway.access.keys import hash_key
from gateway.config import ConfigError, parse_config
from tests.support.access import CHAT, KEY_A, KEY_B, KEY_OFF, MSG, access_config, post, sdk, sha, write_atomically
from tests.support.gateway import gateway_config, serve
from tests.support.polling import async_wait_for, wait_for


# --- default: no keys, no stage --------------------------------------------------------------
def test_without_keys_auth_is_off_and_no_stage_is_registered(gateway, upstream):
    from gateway.access.auth import ACCESS
    from gateway.app import RUNTIME

    upstream.json(CHAT)
    layer = gateway.app[ACCESS]
    stages = gateway.app[RUNTIME].current.stages  # the active stages of the config in force
    assert layer.access_stage not in stages and layer.plugin_stage not in stages
    r = post(gateway, key=None)
    assert r.status_code == 200 and "x-ratelimit-limit-requests" not in r.headers
    assert httpx.get(f"{gateway.url}/admin/access").json()["mode"] == "none"


def test_auth_mode_defaults_and_explicit_keys_mode_with_no_keys_locks(upstream, make_gateway, caplog):
    assert parse_config(access_config(upstream.url)).config.auth.mode is None
    from gateway.config.access import auth_mode

    assert auth_mode(parse_config(access_config(upstream.url)).config) == "keys"
    assert auth_mode(parse_config(gateway_config(upstream.url)).config) == "none"
    with caplog.at_level(logging.WARNING, logger="gateway.auth"):
        gw = make_gateway(gateway_config(upstream.url, extra="telemetry: {enabled: false}\nauth: {mode: keys}\n"))
    assert "no key is configured" in caplog.text
    assert post(gw, key=None).status_code == 401 and not upstream.received


# --- 401 / 403 -----------------------------------------------------------------------------
def test_missing_unknown_and_disabled_keys_get_401_and_never_reach_upstream(upstream, make_gateway):
    gw = make_gateway(access_config(upstream.url))
    upstream.json(CHAT)
    for key in (None, "sk-gw-not-a-known-key-000000", KEY_OFF):
        with pytest.raises(openai.AuthenticationError) as info:
            sdk(gw, key).chat.completions.create(model="gpt-test", messages=MSG)
        err = info.value.body
        assert err["code"] == "invalid_api_key" and err["type"] == "invalid_request_error"
        assert info.value.response.headers["x-request-id"]
        if key:
            assert key not in info.value.response.text  # the key is never echoed
    raw = post(gw, key=None)
    assert raw.status_code == 401 and set(raw.json()["error"]) == {"message", "type", "param", "code"}
    assert "Authorization" in raw.json()["error"]["message"]
    assert not upstream.received


def test_key_accepted_in_bearer_api_key_and_x_api_key_headers(upstream, make_gateway):
    gw = make_gateway(access_config(upstream.url))
    upstream.json(CHAT)
    assert post(gw).status_code == 200
    assert post(gw, key=None, **{"api-key": KEY_A}).status_code == 200
    assert post(gw, key=None, **{"x-api-key": KEY_A}).status_code == 200
    for r in upstream.received:  # the client's key never goes upstream; the backend's own does
        assert "sk-gw" not in str(r.headers) and r.headers["Authorization"] == "Bearer sk-backend-secret"
        assert not {"api-key", "x-api-key"} & {h.lower() for h in r.headers}


def test_model_outside_the_keys_globs_gets_403(upstream, make_gateway):
    gw = make_gateway(access_config(upstream.url))
    upstream.json(CHAT)
    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk(gw).chat.completions.create(model="mock-gpt", messages=MSG)
    assert info.value.body["code"] == "model_not_allowed" and info.value.body["param"] == "model"
    assert not upstream.received
    assert sdk(gw, KEY_B).chat.completions.create(model="mock-gpt", messages=MSG).choices  # team-b: any model
    assert sdk(gw).chat.completions.create(model="same-name", messages=MSG).choices


def test_models_listing_needs_a_key_and_shows_only_allowed_models(upstream, make_gateway):
    gw = make_gateway(access_config(upstream.url))
    assert httpx.get(f"{gw.url}/v1/models").status_code == 401
    a = sdk(gw).models.list()
    assert sorted(m.id for m in a.data) == ["gpt-test", "same-name"]
    assert sorted(m.id for m in sdk(gw, KEY_B).models.list().data) == ["gpt-test", "mock-gpt", "same-name"]
    assert sdk(gw).models.retrieve("gpt-test").id == "gpt-test"
    with pytest.raises(openai.PermissionDeniedError):
        sdk(gw).models.retrieve("mock-gpt")
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, "sk-wrong").models.retrieve("gpt-test")


def test_tenant_and_key_id_drive_routing_rules_and_metadata_reaches_ctx(upstream, make_gateway):
    extra = """
routes:
  - {name: team-b-to-mock, match: {tenant: team-b}, model: mock-gpt}
  - {name: by-key-id, match: {api_key_id: team-a-main, metadata: {cost_center: cc-42}}, model: same-name}
plugins:
  - {path: "tests.integration.test_access:Recorder"}
"""
    gw = make_gateway(access_config(upstream.url, extra=extra))
    upstream.json(CHAT)
    Recorder.seen.clear()
    r = post(gw, body={"model": "gpt-test", "messages": MSG, "metadata": {"cost_center": "spoofed"}})
    assert r.status_code == 200 and upstream.last.json()["model"] == "same-name"  # rule by key id + key metadata
    assert Recorder.seen[-1] == ("team-a", "team-a-main", {"cost_center": "cc-42"})
    r = post(gw, key=KEY_B)
    assert r.headers["x-gateway-backend"] == "mock"  # team-b's rule
    assert Recorder.seen[-1][0] == "team-b" and Recorder.seen[-1][1] == "key-" + sha(KEY_B)[:12]


class Recorder:
    """A plugin that records what the access stage put on the context."""

    seen: list = []

    async def before_request(self, ctx):
        self.seen.append((ctx.tenant, ctx.api_key_id, dict(ctx.metadata or {})))


# --- limits --------------------------------------------------------------------------------
def ratelimit_headers(r) -> dict:
    return {k.lower(): v for k, v in r.headers.items() if k.lower().startswith("x-ratelimit-")}


def test_rpm_limit_429_with_retry_after_and_openai_headers_on_every_answer(upstream, make_gateway):
    gw = make_gateway(access_config(upstream.url, key_a="rpm: 3, tpm: 100000"))
    upstream.json(CHAT, headers={"x-ratelimit-limit-requests": "999999"})  # the provider's own: replaced
    raw = sdk(gw).chat.completions.with_raw_response.create(model="gpt-test", messages=MSG)
    h = ratelimit_headers(raw)
    assert h["x-ratelimit-limit-requests"] == "3" and h["x-ratelimit-remaining-requests"] == "2"
    assert h["x-ratelimit-limit-tokens"] == "100000" and int(h["x-ratelimit-remaining-tokens"]) < 100000
    assert h["x-ratelimit-reset-requests"].endswith("s") and h["x-ratelimit-reset-tokens"].endswith(("s", "ms"))
    assert raw.headers.get_list("x-ratelimit-limit-requests") == ["3"]
    # a stream carries them too
    upstream.sse([b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
                  b'"delta":{"content":"x"},"finish_reason":"stop"}]}\n\n', b"data: [DONE]\n\n"], times=1)
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {KEY_A}"},
                      json={"model": "gpt-test", "messages": MSG, "stream": True}) as s:
        assert s.headers["x-ratelimit-remaining-requests"] == "1"
        b"".join(s.iter_bytes())
    # an upstream error answer carries them too
    upstream.json({"error": {"message": "bad", "type": "invalid_request_error"}}, status=400, times=1)
    bad = post(gw)
    assert bad.status_code == 400 and bad.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as info:
        sdk(gw).chat.completions.create(model="gpt-test", messages=MSG)
    resp = info.value.response
    assert info.value.body["code"] == "rate_limit_exceeded" and info.value.body["type"] == "requests"
    assert 1 <= int(resp.headers["retry-after"]) <= 20 and resp.headers["x-ratelimit-remaining-requests"] == "0"
    assert "RPM" in info.value.body["message"]
    assert len(upstream.received) == 3
    # another key has its own bucket
    assert post(gw, key=KEY_B).status_code == 200


def test_tpm_limit_estimates_before_and_corrects_with_real_usage_after(upstream, make_gateway):
    gw = make_gateway(access_config(upstream.url, key_a="tpm: 1000", extra="limits: {default_max_tokens: 100}"))
    upstream.json(CHAT)  # the upstream reports 7 tokens used
    r = post(gw, body={"model": "gpt-test", "messages": MSG, "max_tokens": 600})
    assert r.status_code == 200
    reserved = 1000 - int(r.headers["x-ratelimit-remaining-tokens"])
    assert 600 < reserved < 620  # prompt estimate + max_tokens
    # the 7 real tokens replaced the estimate: the next request sees the refund
    r2 = post(gw, body={"model": "gpt-test", "messages": MSG, "max_tokens": 600})
    assert r2.status_code == 200 and 1000 - int(r2.headers["x-ratelimit-remaining-tokens"]) < reserved + 20
    # estimate above what is left: 429 by tokens, retry later
    upstream.hold()  # the first request stays in flight, its tokens reserved

    async def two():
        async with httpx.AsyncClient(timeout=30) as c:
            body = {"model": "gpt-test", "messages": MSG, "max_tokens": 600}
            sent = len(upstream.received)
            first = asyncio.create_task(c.post(f"{gw.url}/v1/chat/completions", json=body,
                                               headers={"Authorization": f"Bearer {KEY_A}"}))
            await async_wait_for(lambda: len(upstream.received) > sent, what="the first request upstream")
            second = await c.post(f"{gw.url}/v1/chat/completions", json=body,
                                  headers={"Authorization": f"Bearer {KEY_A}"})
            upstream.release()
            return await first, second

    first, second = asyncio.run(two())
    assert first.status_code == 200 and second.status_code == 429
    err = second.json()["error"]
    assert err["type"] == "tokens" and err["code"] == "rate_limit_exceeded" and "TPM" in err["message"]
    assert int(second.headers["retry-after"]) >= 1 and second.headers["x-ratelimit-limit-tokens"] == "1000"
    # more than the whole minute's tokens: never satisfiable, the SDK is told not to retry
    too_big = post(gw, body={"model": "gpt-test", "messages": MSG, "max_tokens": 5000})
    assert too_big.status_code == 429 and too_big.headers["x-should-retry"] == "false"
    assert "retry-after" not in too_big.headers and "too large" in too_big.json()["error"]["message"]


def test_concurrency_limit(upstream, make_gateway):
    gw = make_gateway(access_config(upstream.url, key_a="max_concurrent: 2"))
    upstream.json(CHAT)

    async def burst():
        """Four requests while the upstream holds the answers: two get slots, two are refused;
        then the held two are answered."""
        upstream.hold()
        async with httpx.AsyncClient(timeout=30) as c:
            tasks = [asyncio.create_task(c.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-test",
                                                "messages": MSG}, headers={"Authorization": f"Bearer {KEY_A}"}))
                     for _ in range(4)]
            await async_wait_for(lambda: sum(t.done() for t in tasks) == 2, what="two refusals")
            upstream.release()
            return await asyncio.gather(*tasks)

    codes = sorted(r.status_code for r in asyncio.run(burst()))
    assert codes == [200, 200, 429, 429]
    assert len(upstream.received) == 2
    rejected = [r for r in asyncio.run(burst()) if r.status_code == 429]  # slots were freed
    assert len(rejected) == 2 and rejected[0].json()["error"]["code"] == "concurrency_limit_exceeded"
    assert rejected[0].headers["retry-after"] == "1"


def test_concurrency_slot_is_freed_when_the_client_disconnects(upstream, make_gateway):
    gw = make_gateway(access_config(upstream.url, key_a="max_concurrent: 1"))
    upstream.json(CHAT, delay_s=2.0, times=1)
    with pytest.raises(httpx.ReadTimeout):
        post_timeout = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG},
                                  headers={"Authorization": f"Bearer {KEY_A}"}, timeout=0.3)
        del post_timeout
    upstream.json(CHAT)
    # The slot is released when the gateway notices the hang-up and cancels the upstream call.
    wait_for(lambda: upstream.disconnects, what="the gateway to cancel the abandoned upstream call")
    assert post(gw).status_code == 200


def test_budget_per_day_429_until_the_period_resets(upstream, make_gateway):
    extra = "pricing:\n  models:\n    up-model: {input: 100000.0, output: 100000.0}\n"  # 7 tokens → $0.70
    gw = make_gateway(access_config(upstream.url, key_a="budget_usd: {day: 1.0, month: 100}", extra=extra))
    upstream.json(CHAT)
    assert post(gw).status_code == 200  # $0.70
    assert post(gw).status_code == 200  # $1.40: the request that crosses the line is served
    with pytest.raises(openai.RateLimitError) as info:
        sdk(gw).chat.completions.create(model="gpt-test", messages=MSG)
    body = info.value.body
    assert body["code"] == "budget_exceeded" and body["type"] == "insufficient_quota"
    assert "per day" in body["message"] and "$1.40 of $1.00 spent" in body["message"]
    retry = int(info.value.response.headers["retry-after"])
    now = time.gmtime()
    assert abs(retry - (86400 - (now.tm_hour * 3600 + now.tm_min * 60 + now.tm_sec))) < 5
    assert len(upstream.received) == 2
    usage = httpx.get(f"{gw.url}/admin/access").json()["keys"][0]["usage"]
    assert usage["spent_usd_day"] == pytest.approx(1.4) and usage["spent_usd_month"] == pytest.approx(1.4)
    assert post(gw, key=KEY_B).status_code == 200  # other keys unaffected


def test_budget_counts_streamed_usage(upstream, make_gateway):
    extra = "pricing:\n  models:\n    up-model: {input: 100000.0, output: 100000.0}\n"
    gw = make_gateway(access_config(upstream.url, key_a="budget_usd: {month: 1.0}", extra=extra))
    usage = {"prompt_tokens": 6, "completion_tokens": 5, "total_tokens": 11}
    upstream.sse([b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"up-model","choices":'
                  b'[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}]}\n\n',
                  b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"up-model","choices":[],'
                  b'"usage":' + orjson.dumps(usage) + b"}\n\n", b"data: [DONE]\n\n"])
    chunks = list(sdk(gw).chat.completions.create(model="gpt-test", messages=MSG, stream=True))
    assert chunks
    with pytest.raises(openai.RateLimitError) as info:
        sdk(gw).chat.completions.create(model="gpt-test", messages=MSG)
    assert "per month" in info.value.body["message"] and "$1.10 of $1.00 spent" in info.value.body["message"]


def test_rejected_and_failed_requests_do_not_spend_tokens(upstream, make_gateway):
    gw = make_gateway(access_config(upstream.url, key_a="tpm: 2000"))
    upstream.json({"error": {"message": "boom"}}, status=500)
    r = post(gw, body={"model": "gpt-test", "messages": MSG, "max_tokens": 1500})
    assert r.status_code in (500, 502)
    upstream.json(CHAT)
    assert post(gw, body={"model": "gpt-test", "messages": MSG, "max_tokens": 1500}).status_code == 200


# --- keys file, config validation, hot reload -----------------------------------------------
def test_keys_from_an_env_referenced_file(upstream, make_gateway, tmp_path, monkeypatch):
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(yaml.safe_dump({"keys": [{"tenant": "from-file", "sha256": sha("sk-gw-file-key-1234567"),
                                                    "rpm": 100}]}))
    monkeypatch.setenv("GW_KEYS_FILE", str(keys_file))
    gw = make_gateway(gateway_config(upstream.url, extra="telemetry: {enabled: false}\n"
                                                         "auth: {keys_file: '${GW_KEYS_FILE}'}\n"))
    upstream.json(CHAT)
    assert post(gw, key="sk-gw-file-key-1234567").headers["x-ratelimit-limit-requests"] == "100"
    assert post(gw, key=KEY_A).status_code == 401


def test_config_errors_name_the_path_and_never_echo_a_key(upstream, tmp_path):
    raw_key = "sk-gw-pasted-the-key-itself-by-mistake"
    with pytest.raises(ConfigError) as info:
        parse_config(gateway_config(upstream.url, extra=f"keys:\n  - {{tenant: t, sha256: {raw_key}}}\n"))
    assert raw_key not in str(info.value)
    assert any(p.startswith("keys[0].sha256: must be the SHA-256") for p in info.value.problems)
    dup = f"keys:\n  - {{tenant: a, sha256: {sha('x')}}}\n  - {{tenant: b, sha256: {sha('x')}, id: key-{sha('x')[:12]}}}\n"
    problems = parse_config_problems(gateway_config(upstream.url, extra=dup))
    assert any("keys[1].id: duplicate key id" in p for p in problems)
    assert any("keys[1].sha256: the same key is listed twice" in p for p in problems)
    assert sha("x") not in "\n".join(problems)
    bad_file = tmp_path / "keys.yaml"
    bad_file.write_text(f"- {{tenant: a, sha256: {raw_key}}}\n")
    problems = parse_config_problems(gateway_config(upstream.url, extra=f"auth: {{keys_file: '{bad_file}'}}\n"))
    assert any("keys_file[0].sha256" in p for p in problems) and raw_key not in "\n".join(problems)
    zero_rpm = f"keys:\n  - {{tenant: a, sha256: {sha('y')}, rpm: 0}}\n"
    assert parse_config_problems(gateway_config(upstream.url, extra=zero_rpm))[0].startswith("keys[0].rpm:")
    missing = parse_config_problems(gateway_config(upstream.url, extra="auth: {keys_file: /nonexistent/k.yaml}\n"))
    assert any("cannot read /nonexistent/k.yaml" in p for p in missing)


def parse_config_problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def test_hot_reload_turns_keys_on_and_changes_limits_keeping_counters(upstream, tmp_path):
    from gateway.app import WATCHER

    upstream.json(CHAT)
    path = tmp_path / "gateway.yaml"
    base = gateway_config(upstream.url, extra="telemetry: {enabled: false}\nserver: {reload_interval_s: 0.05}\n")
    write_atomically(path, base)
    with serve(path=path) as gw:
        assert post(gw, key=None).status_code == 200
        write_atomically(path, base + f"keys:\n  - {{tenant: t, sha256: {sha(KEY_A)}, rpm: 5}}\n")
        wait_for(lambda: post(gw, key=None).status_code == 401, what="the reload to turn keys on")
        assert post(gw).headers["x-ratelimit-remaining-requests"] == "4"
        write_atomically(path, base + f"keys:\n  - {{tenant: t, sha256: {sha(KEY_A)}, rpm: 50}}\n")
        wait_for(lambda: post(gw).headers["x-ratelimit-limit-requests"] == "50", what="the new rpm")
        # counters survived the reload: the bucket was not refilled to 50
        assert int(post(gw).headers["x-ratelimit-remaining-requests"]) < 45
        # a file without keys (emptied, half written) does not turn auth off; an explicit mode does
        watcher = gw.app[WATCHER]
        write_atomically(path, "")
        wait_for(lambda: watcher.status()["last_error"], what="the empty file to be refused")
        write_atomically(path, base)
        # the watcher has read the restored file (same content as the config in force)
        wait_for(lambda: watcher._digest == watcher._read_digest(), what="the watcher to read the restored file")
        assert post(gw, key=None).status_code == 401 and post(gw).status_code == 200
        write_atomically(path, base + "auth: {mode: none}\n")
        wait_for(lambda: post(gw, key=None).status_code == 200, what="auth mode none")


# --- admin ---------------------------------------------------------------------------------
def test_every_admin_route_needs_the_admin_key(upstream, make_gateway):
    gw = make_gateway(access_config(upstream.url, extra="server: {admin_key: adm-0123456789-secret}\n"))
    admin_paths = sorted({(r.method, r.resource.canonical) for r in gw.app.router.routes()
                          if r.resource is not None and r.resource.canonical.startswith("/admin")})
    assert ("GET", "/admin/access") in admin_paths and ("GET", "/admin/telemetry") in admin_paths
    for method, path in admin_paths + [("GET", "/admin/not-a-route"), ("GET", "/admin")]:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {KEY_A}"}):
            r = httpx.request(method, f"{gw.url}{path}", headers=headers, json={})
            assert r.status_code == 401, (method, path, headers)
            assert method == "HEAD" or r.json()["error"]["code"] == "invalid_admin_key"
    good = {"Authorization": "Bearer adm-0123456789-secret"}
    assert httpx.get(f"{gw.url}/admin/access", headers=good).json()["mode"] == "keys"
    assert httpx.get(f"{gw.url}/admin/telemetry", headers=good).status_code == 200
    # the admin key is not a virtual key
    assert post(gw, key="adm-0123456789-secret").status_code == 401


def test_admin_without_key_is_local_only_and_check_is_shared():
    from gateway.access.auth import admin_denied

    class Req:
        method = "GET"

        def __init__(self, remote, auth="", host="127.0.0.1:8080", **headers):
            self.remote = remote
            self.headers = {"Host": host, **headers}
            if auth:
                self.headers["Authorization"] = auth

    assert admin_denied(Req("127.0.0.1"), None) is None and admin_denied(Req("::1", host="[::1]:80"), None) is None
    assert admin_denied(Req("127.0.0.1", host="localhost"), None) is None
    assert admin_denied(Req("10.0.0.7"), None).status == 403
    assert admin_denied(Req("127.0.0.1", host="rebind.attacker.example"), None).status == 403
    assert admin_denied(Req("127.0.0.1", **{"X-Forwarded-For": "203.0.113.9"}), None).status == 403
    assert admin_denied(Req("127.0.0.1"), "k").status == 401
    assert admin_denied(Req("10.0.0.7", "Bearer k"), "k") is None
    assert admin_denied(Req("10.0.0.7", "Bearer k2"), "k").status == 401


def test_admin_access_lists_keys_without_hashes(upstream, make_gateway):
    gw = make_gateway(access_config(upstream.url, key_a="rpm: 10, tpm: 5000, max_concurrent: 3, "
                                                          "budget_usd: {day: 2}"))
    upstream.json(CHAT)
    post(gw)
    info = httpx.get(f"{gw.url}/admin/access").json()
    text = orjson.dumps(info).decode()
    assert sha(KEY_A) not in text and sha(KEY_A)[:16] not in text and KEY_A not in text
    a = info["keys"][0]
    assert a["id"] == "team-a-main" and a["tenant"] == "team-a" and a["rpm"] == 10
    assert a["usage"]["requests_remaining"] == 9 and a["usage"]["in_flight"] == 0
    assert info["limits"]["store"] == "memory" and info["limits"]["admitted"] == 1


# --- start-up warning, CLI -------------------------------------------------------------------
def test_open_gateway_on_a_public_address_warns_loudly(upstream, caplog):
    open_snap = parse_config(gateway_config(upstream.url))
    with caplog.at_level(logging.WARNING, logger="gateway.auth"):
        assert warn_if_open(open_snap, "0.0.0.0") is True
        assert warn_if_open(open_snap, "127.0.0.1") is False and warn_if_open(open_snap, "localhost") is False
        assert warn_if_open(parse_config(access_config(upstream.url)), "0.0.0.0") is False
    assert caplog.text.count("AUTH IS OFF") == 1


def test_cli_keys_create_prints_the_key_once_and_a_pasteable_entry(upstream, make_gateway):
    from click.testing import CliRunner

    from gateway.cli.commands import main

    out = CliRunner().invoke(main, ["keys", "create", "--tenant", "team-z", "--models", "gpt-*,same-*",
                                    "--rpm", "7", "--budget-day", "3"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    key = lines[0].split(": ", 1)[1]
    assert key.startswith("sk-gw-") and len(key) > 40 and out.output.count(key) == 1
    entry_text = "\n".join(lines[2:])
    entry = yaml.safe_load(entry_text)[0]
    assert entry == {"tenant": "team-z", "sha256": hash_key(key), "models": ["gpt-*", "same-*"], "rpm": 7,
                     "budget_usd": {"day": 3.0}}
    gw = make_gateway(gateway_config(upstream.url, extra="telemetry: {enabled: false}\nkeys:\n" + entry_text))
    upstream.json(CHAT)
    assert post(gw, key=key).headers["x-ratelimit-limit-requests"] == "7"
    hashed = CliRunner().invoke(main, ["keys", "hash"], input=key + "\n")
    assert hashed.output.strip() == hash_key(key)


def test_cache_hits_carry_the_headers_and_cost_no_tokens_or_budget(upstream, make_gateway):
    extra = ("cache: {enabled: true, mode: always}\n"
             "pricing:\n  models:\n    up-model: {input: 100000.0, output: 100000.0}\n")  # 7 tokens = $0.70
    gw = make_gateway(access_config(upstream.url, key_a="rpm: 10, tpm: 5000, budget_usd: {day: 1.0}", extra=extra))
    upstream.json(CHAT)
    first = post(gw)
    assert first.status_code == 200 and first.headers.get("x-gateway-cache") != "hit"
    hits = [post(gw) for _ in range(3)]
    assert all(h.headers["x-gateway-cache"] == "hit" for h in hits) and len(upstream.received) == 1
    assert [h.headers["x-ratelimit-remaining-requests"] for h in hits] == ["8", "7", "6"]  # requests still count
    usage = httpx.get(f"{gw.url}/admin/access").json()["keys"][0]["usage"]
    assert usage["spent_usd_day"] == pytest.approx(0.7)  # only the answer that reached the model was paid
    assert usage["tokens_remaining"] > 5000 - 20
