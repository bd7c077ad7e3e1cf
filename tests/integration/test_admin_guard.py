"""The admin API and the dashboard without an admin key, behind a proxy and from a browser.

Each test replays an attack on a real gateway on loopback (headers a browser page, a DNS-rebinding
page or a same-host proxy would send, set by hand with httpx) and checks what was refused, and
that nothing reached the fake upstream; and that the legitimate use still works.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time

import httpx
import openai
import pytest

from gateway.config import parse_config
from gateway.dashboard import session
from gateway.proxy.server import free_port
from tests.support.gateway import gateway_config, serve

ADMIN = "adm-guard-0123456789"
CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
CHAT_BODY = b'{"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}'
EVIL = "https://evil.example"


def config(upstream_url: str, server: str = "", extra: str = "") -> str:
    server_yaml = f"server: {{{server}}}\n" if server else ""
    return gateway_config(upstream_url, extra="telemetry: {enabled: false}\n" + server_yaml + extra)


def error_of(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] == code and set(err) == {"message", "type", "param", "code"}
    return err["message"]


# --- without an admin key: local requests only -------------------------------------------------
def test_admin_without_key_refuses_foreign_host_names(upstream, make_gateway):
    """DNS rebinding: a page on rebind.attacker.example resolved to 127.0.0.1 sends its own Host."""
    gw = make_gateway(config(upstream.url))
    port = gw.port
    for host in ("rebind.attacker.example", f"rebind.attacker.example:{port}", f"127.0.0.2:{port}", "",
                 f"localhost.attacker.example:{port}"):
        message = error_of(httpx.get(f"{gw.url}/admin/config", headers={"Host": host}), 403, "admin_forbidden")
        assert "server.admin_key" in message
        page = httpx.get(f"{gw.url}/dashboard", headers={"Host": host})
        assert page.status_code == 403 and "server.admin_key" in page.text
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}", f"LOCALHOST:{port}"):
        assert httpx.get(f"{gw.url}/admin/config", headers={"Host": host}).status_code == 200, host
    assert httpx.get(f"{gw.url}/dashboard").status_code == 200


@pytest.mark.parametrize("header", [("X-Forwarded-For", "127.0.0.1"), ("X-Forwarded-For", "203.0.113.9"),
                                    ("Forwarded", "for=127.0.0.1"), ("X-Forwarded-Host", "localhost"),
                                    ("X-Forwarded-Proto", "https"), ("X-Real-IP", "127.0.0.1"),
                                    ("Via", "1.1 squid")])
def test_admin_without_key_refuses_relayed_requests(upstream, make_gateway, header):
    """A proxy on the same host makes every client look local: its headers give it away."""
    gw = make_gateway(config(upstream.url))
    error_of(httpx.get(f"{gw.url}/admin/config", headers=dict([header])), 403, "admin_forbidden")
    error_of(httpx.post(f"{gw.url}/admin/telemetry/flush", headers=dict([header])), 403, "admin_forbidden")
    assert httpx.get(f"{gw.url}/dashboard", headers=dict([header])).status_code == 403


def test_trusted_proxy_forwarded_client_decides(upstream, make_gateway):
    """Behind a configured proxy its X-Forwarded-For client (not the proxy) must be local."""
    gw = make_gateway(config(upstream.url, "trusted_proxies: [127.0.0.1/32]"))
    url = f"{gw.url}/admin/config"
    error_of(httpx.get(url, headers={"X-Forwarded-For": "203.0.113.7"}), 403, "admin_forbidden")
    # a client's own X-Forwarded-For entry in front of the real one changes nothing
    error_of(httpx.get(url, headers={"X-Forwarded-For": "127.0.0.1, 203.0.113.7"}), 403, "admin_forbidden")
    error_of(httpx.get(url, headers={"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "rebind.attacker.example"}),
             403, "admin_forbidden")
    assert httpx.get(url, headers={"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "localhost"}).status_code == 200
    assert httpx.get(url).status_code == 200  # the proxy host itself, no forwarding
    # relayed, but the client is not named in X-Forwarded-For (RFC 7239 Forwarded is not read)
    for header in ({"Forwarded": "for=203.0.113.7"}, {"X-Real-IP": "203.0.113.7"}, {"Via": "1.1 haproxy"},
                   {"X-Forwarded-Proto": "https"}):
        error_of(httpx.get(url, headers=header), 403, "admin_forbidden")


def test_rebinding_page_behind_a_trusted_proxy_cannot_name_itself_localhost(upstream, make_gateway):
    """A proxy that keeps the browser's Host (nginx's ``proxy_set_header Host $host``) passes on
    headers the page set itself: a rebinding page's own ``X-Forwarded-Host: localhost`` must not
    make its request local."""
    gw = make_gateway(config(upstream.url, "trusted_proxies: [127.0.0.1/32]"))
    local_browser = {"X-Forwarded-For": "127.0.0.1"}
    for forwarded_host in ("localhost", "rebind.attacker.example, localhost", "localhost, rebind.attacker.example"):
        headers = {**local_browser, "Host": "rebind.attacker.example", "X-Forwarded-Host": forwarded_host}
        error_of(httpx.get(f"{gw.url}/admin/config", headers=headers), 403, "admin_forbidden")
        assert httpx.get(f"{gw.url}/dashboard", headers=headers).status_code == 403
        headers["Host"] = "localhost"  # a page cannot forge Host; a proxy-added list must hold loopback only
        if "rebind" in forwarded_host:
            error_of(httpx.get(f"{gw.url}/admin/config", headers=headers), 403, "admin_forbidden")
    # a proxy that rewrites Host to the gateway's address and names the browser's host in X-Forwarded-Host
    assert httpx.get(f"{gw.url}/admin/config", headers={**local_browser, "X-Forwarded-Host": "localhost:8443"}
                     ).status_code == 200
    assert httpx.get(f"{gw.url}/admin/config", headers={**local_browser, "Host": "localhost"}).status_code == 200


def test_local_clients_reach_a_gateway_bound_to_the_ipv6_wildcard(upstream):
    """``serve --host ::`` listens on IPv6 only: the CLIs' local URL for it is [::1], which the
    admin check counts as local."""
    from gateway.access.proxies import local_url

    with serve(config(upstream.url), host="::") as gw:
        url = local_url("::", gw.port)
        assert url == f"http://[::1]:{gw.port}"
        assert httpx.get(f"{url}/admin/config").status_code == 200
    assert local_url("0.0.0.0", 8080) == "http://127.0.0.1:8080"


def test_serve_on_a_public_address_without_admin_key_warns_once(tmp_path, caplog):
    from gateway.access.admin_guard import warn_if_admin_open

    with caplog.at_level(logging.WARNING, logger="gateway.auth"):
        assert not warn_if_admin_open(None, "127.0.0.1") and not warn_if_admin_open(None, "::1")
        assert not warn_if_admin_open(None, "localhost") and not warn_if_admin_open("k", "0.0.0.0")
    assert "admin_key" not in caplog.text
    port = free_port()
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text("backends:\n  mock: {type: mock}\nmodels:\n  mock-gpt: {targets: [{backend: mock}]}\n"
                   f"server: {{host: 0.0.0.0, port: {port}}}\n")
    data = ["--config", str(cfg), "--data-dir", str(tmp_path / "data")]
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", *data], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        # the CLI on the same machine still reaches the admin API of a wildcard-bound gateway
        queried = subprocess.run([sys.executable, "-m", "gateway", "query", *data, "SELECT 6 * 7 AS answer"],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert queried.returncode == 0 and "42" in queried.stdout, queried.stdout + queried.stderr
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    lines = [line for line in out.splitlines() if "no server.admin_key" in line]
    assert len(lines) == 1, out
    assert "0.0.0.0" in lines[0] and "set server.admin_key" in lines[0]


# --- requests a web page could forge -------------------------------------------------------------
def test_credential_less_admin_posts_must_be_json(upstream, make_gateway):
    gw = make_gateway(config(upstream.url))
    sql = b'{"sql": "SELECT 1"}'
    for path in ("/admin/query", "/admin/telemetry/flush"):
        for content_type in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                             "multipart/form-data; boundary=x"):
            message = error_of(httpx.post(gw.url + path, content=sql, headers={"Content-Type": content_type}),
                               415, "unsupported_media_type")
            assert "Content-Type: application/json" in message
        error_of(httpx.post(gw.url + path, content=sql), 415, "unsupported_media_type")  # a body, no type
    # JSON passes the guard, and a bare POST too
    assert httpx.post(f"{gw.url}/admin/query", json={"sql": "SELECT 1"}).status_code == 200
    assert httpx.post(f"{gw.url}/admin/telemetry/flush").json() == {"enabled": False}
    assert httpx.post(f"{gw.url}/admin/telemetry/flush", headers={"Content-Type": "application/json"}).status_code == 200


def test_auth_none_chat_needs_json_and_nothing_goes_upstream(upstream, make_gateway):
    gw = make_gateway(config(upstream.url))
    upstream.json(CHAT)
    url = f"{gw.url}/v1/chat/completions"
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        message = error_of(httpx.post(url, content=CHAT_BODY, headers={"Content-Type": content_type}),
                           415, "unsupported_media_type")
        assert "Content-Type: application/json" in message
    error_of(httpx.post(url, content=CHAT_BODY), 415, "unsupported_media_type")
    assert upstream.received == []
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
    out = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.content == "hello" and len(upstream.received) == 1
    assert httpx.get(f"{gw.url}/v1/models").status_code == 200  # a GET has no body to check


def test_foreign_origins_are_refused_without_a_credential(upstream, make_gateway):
    gw = make_gateway(config(upstream.url))
    upstream.json(CHAT)
    evil = {"Origin": EVIL}
    for r in (httpx.post(f"{gw.url}/v1/chat/completions", content=CHAT_BODY,
                         headers={**evil, "Content-Type": "application/json"}),
              httpx.post(f"{gw.url}/v1/chat/completions", content=CHAT_BODY, headers={**evil, "Content-Type": "text/plain"}),
              httpx.get(f"{gw.url}/v1/models", headers=evil),
              httpx.post(f"{gw.url}/admin/query", json={"sql": "SELECT 1"}, headers=evil),
              httpx.post(f"{gw.url}/admin/telemetry/flush", headers=evil),
              httpx.get(f"{gw.url}/admin/config", headers=evil),
              httpx.post(f"{gw.url}/admin/query", json={"sql": "SELECT 1"}, headers={"Origin": "null"}),
              # DNS rebinding with a JSON fetch: "same origin" under the attacker's name
              httpx.post(f"{gw.url}/v1/chat/completions", content=CHAT_BODY, headers={
                  "Origin": "http://rebind.attacker.example:8080", "Host": "rebind.attacker.example:8080",
                  "Content-Type": "application/json"})):
        message = error_of(r, 403, "origin_not_allowed")
        assert "server.cors_origins" in message
        assert not any(h.lower().startswith("access-control-") for h in r.headers)
    assert upstream.received == []
    # the gateway's own page on a loopback name is not foreign
    own = httpx.get(f"{gw.url}/admin/config", headers={"Origin": gw.url})
    assert own.status_code == 200 and "access-control-allow-origin" not in own.headers
    # with a key the request carries its own credential: no browser checks
    keyed = make_gateway(config(upstream.url, extra=f"""
keys: [{{tenant: t, sha256: {__import__("hashlib").sha256(b"sk-gw-origin-test-key").hexdigest()}}}]
"""))
    r = httpx.post(f"{keyed.url}/v1/chat/completions", content=CHAT_BODY,
                   headers={**evil, "Content-Type": "application/json", "Authorization": "Bearer sk-gw-origin-test-key"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_origins_get_preflights_and_allow_origin(upstream, make_gateway):
    app = "https://app.example.com"
    gw = make_gateway(config(upstream.url, f'cors_origins: ["{app}/"]'))
    upstream.json(CHAT)
    url = f"{gw.url}/v1/chat/completions"
    pre = httpx.options(url, headers={"Origin": app, "Access-Control-Request-Method": "POST",
                                      "Access-Control-Request-Headers": "content-type, authorization"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == app
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert pre.headers["access-control-allow-headers"] == "content-type, authorization"
    assert pre.headers["access-control-max-age"] == "600" and pre.headers["vary"] == "Origin"
    r = httpx.post(url, content=CHAT_BODY, headers={"Origin": app, "Content-Type": "application/json"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == app and "Origin" in r.headers["vary"]
    # streamed answers carry it too
    upstream.sse([b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n', b"data: [DONE]\n\n"])
    with httpx.stream("POST", url, content=CHAT_BODY[:-1] + b', "stream": true}',
                      headers={"Origin": app, "Content-Type": "application/json"}) as s:
        assert s.status_code == 200 and s.headers["access-control-allow-origin"] == app
        s.read()
    # a listed origin still sends JSON; others get neither a preflight nor the header
    error_of(httpx.post(url, content=CHAT_BODY, headers={"Origin": app, "Content-Type": "text/plain"}),
             415, "unsupported_media_type")
    other = httpx.options(url, headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in other.headers
    r = httpx.post(url, content=CHAT_BODY, headers={"Origin": EVIL, "Content-Type": "application/json"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    # without cors_origins: no CORS answer at all
    plain = make_gateway(config(upstream.url))
    pre = httpx.options(f"{plain.url}/v1/chat/completions", headers={"Origin": app,
                                                                     "Access-Control-Request-Method": "POST"})
    assert not any(h.lower().startswith("access-control-") for h in pre.headers)


def test_bad_cors_and_proxy_settings_are_config_errors(upstream):
    from gateway.config import ConfigError

    for server, expected in (('cors_origins: ["*"]', "server.cors_origins: '*' is not an origin"),
                             ('cors_origins: ["https://a.example/x"]', "is not an origin: scheme://host[:port]"),
                             ('trusted_proxies: ["10.0.0.300/8"]',
                              "server.trusted_proxies: '10.0.0.300/8' is not an IP address or CIDR")):
        with pytest.raises(ConfigError) as info:
            parse_config(config(upstream.url, server))
        assert expected in str(info.value)
    assert parse_config(config(upstream.url, 'cors_origins: ["HTTPS://App.Example.com/"]')).config.server.cors_origins \
        == ["https://app.example.com"]


# --- the dashboard session -------------------------------------------------------------------------
def login(url: str, **headers) -> httpx.Response:
    return httpx.post(f"{url}/dashboard/login", data={"key": ADMIN}, headers=headers)


def test_logout_revokes_the_session_server_side(upstream, tmp_path):
    text = config(upstream.url, f"admin_key: {ADMIN}")
    dash = {"X-Dashboard": "1"}
    with serve(text, data_dir=str(tmp_path)) as gw:
        ok = login(gw.url)
        assert ok.status_code == 303
        copied = {session.COOKIE: ok.cookies[session.COOKIE]}
        other = {session.COOKIE: login(gw.url).cookies[session.COOKIE]}  # a second browser
        with httpx.Client(base_url=gw.url, cookies=copied) as c:
            assert c.get("/dashboard").status_code == 200 and c.get("/admin/telemetry", headers=dash).status_code == 200
            out = c.post("/dashboard/logout")
            assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
        with httpx.Client(base_url=gw.url, cookies=copied) as c:  # the copy kept from before sign-out
            assert c.get("/dashboard").status_code == 401
            assert c.get("/admin/telemetry", headers=dash).status_code == 401
        with httpx.Client(base_url=gw.url, cookies=other) as c:  # other sessions go on
            assert c.get("/admin/telemetry", headers=dash).status_code == 200
    # another process on the same data folder (a worker, a restart) refuses it too
    with serve(text, data_dir=str(tmp_path)) as gw2:
        with httpx.Client(base_url=gw2.url, cookies=copied) as c:
            assert c.get("/admin/telemetry", headers=dash).status_code == 401
        with httpx.Client(base_url=gw2.url, cookies=other) as c:
            assert c.get("/admin/telemetry", headers=dash).status_code == 200


def test_admin_key_is_never_taken_from_the_url(upstream, make_gateway):
    gw = make_gateway(config(upstream.url, f"admin_key: {ADMIN}"))
    r = httpx.get(f"{gw.url}/dashboard", params={"key": ADMIN})
    assert r.status_code == 400 and "set-cookie" not in r.headers and "not accepted in the address" in r.text
    for path in ("/admin/config", "/admin/telemetry"):
        error_of(httpx.get(gw.url + path, params={"key": ADMIN}), 401, "invalid_admin_key")


def test_secure_cookie_over_tls_through_a_trusted_proxy_only(upstream, make_gateway):
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.4"}
    proxied = make_gateway(config(upstream.url, f"admin_key: {ADMIN}, trusted_proxies: [127.0.0.0/8]"))
    cookie = login(proxied.url, **https).headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie
    assert "Secure" not in login(proxied.url, **{"X-Forwarded-Proto": "http"}).headers["set-cookie"]
    assert "Secure" not in login(proxied.url).headers["set-cookie"]
    # the same header from a peer that is not a configured proxy is not believed
    direct = make_gateway(config(upstream.url, f"admin_key: {ADMIN}, trusted_proxies: [10.0.0.0/8]"))
    assert "Secure" not in login(direct.url, **https).headers["set-cookie"]


# --- wrong admin keys ------------------------------------------------------------------------------
def test_wrong_admin_keys_are_slowed_per_client_address(upstream, make_gateway):
    gw = make_gateway(config(upstream.url, f"admin_key: {ADMIN}, trusted_proxies: [127.0.0.1/32]"))
    url = f"{gw.url}/admin/config"
    attacker = {"X-Forwarded-For": "203.0.113.5"}

    async def burst(n: int, login_form: bool = False):
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=n + 1)) as c:
            if login_form:
                tasks = [asyncio.ensure_future(c.post(f"{gw.url}/dashboard/login", data={"key": f"form-{i}"},
                                                      headers=attacker)) for i in range(n)]
            else:
                tasks = [asyncio.ensure_future(c.get(url, headers={**attacker, "Authorization": f"Bearer guess-{i}"}))
                         for i in range(n)]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            # meanwhile another address is answered at once, long before the burst is through
            neighbour = await c.get(url, headers={"X-Forwarded-For": "203.0.113.6", "Authorization": f"Bearer {ADMIN}"})
            pending = sum(not t.done() for t in tasks)
            return [await t for t in tasks], neighbour, pending

    t0 = time.monotonic()
    answers, neighbour, pending = asyncio.run(burst(30))
    elapsed = time.monotonic() - t0
    assert neighbour.status_code == 200 and pending > 0
    statuses = [r.status_code for r in answers]
    assert set(statuses) == {401, 429}, statuses
    refused = [r for r in answers if r.status_code == 429]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    error_of(refused[0], 429, "too_many_failed_attempts")
    checked = statuses.count(401)
    assert 2 <= checked < 30 and elapsed >= 0.5 * (checked - 1)  # checked one at a time, 0.5 s apart
    # a key that already failed is answered at once, without queueing
    known = statuses.index(401)
    error_of(httpx.get(url, headers={**attacker, "Authorization": f"Bearer guess-{known}"}), 401, "invalid_admin_key")
    # the login form is slowed the same way
    answers, neighbour, _ = asyncio.run(burst(30, login_form=True))
    statuses = [r.status_code for r in answers]
    assert set(statuses) == {401, 429} and "Too many wrong keys" in answers[statuses.index(429)].text
    assert all("set-cookie" not in r.headers for r in answers)
    # once the queue has drained the right key works from that address too
    assert httpx.get(url, headers={**attacker, "Authorization": f"Bearer {ADMIN}"}).status_code == 200


def test_proxies_and_origins_follow_hot_reloads(upstream, tmp_path):
    from tests.support.access import write_atomically
    from tests.support.telemetry import wait_for

    path = tmp_path / "gateway.yaml"
    base = gateway_config(upstream.url, extra="telemetry: {enabled: false}\n")
    app = "https://app.example.com"
    write_atomically(path, base + "server: {reload_interval_s: 0.05}\n")
    with serve(path=path) as gw:
        relayed = {"X-Forwarded-For": "127.0.0.1"}
        assert httpx.get(f"{gw.url}/admin/config", headers=relayed).status_code == 403
        assert httpx.get(f"{gw.url}/v1/models", headers={"Origin": app}).status_code == 403
        write_atomically(path, base + f'server: {{reload_interval_s: 0.05, trusted_proxies: [127.0.0.1], '
                                      f'cors_origins: ["{app}"]}}\n')
        wait_for(lambda: httpx.get(f"{gw.url}/admin/config", headers=relayed).status_code == 200,
                 what="the reload to trust the proxy")
        r = httpx.get(f"{gw.url}/v1/models", headers={"Origin": app})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == app
