"""What every answer follows: an ``x-request-id``, the routing headers on upstream failures,
``/health`` beside ``/healthz``, and ``/admin/config`` describing the file as it is now."""

from __future__ import annotations

import socket

import httpx
import openai

from tests.support.gateway import gateway_config, serve
from tests.support.polling import wait_for

MSG = [{"role": "user", "content": "hi"}]


PATHS = [("GET", "/v1/models"), ("GET", "/v1/models/gpt-test"), ("GET", "/v1/models/no-such-model"),
         ("GET", "/healthz"), ("GET", "/health"), ("GET", "/readyz"), ("GET", "/no/such/path"),
         ("DELETE", "/v1/chat/completions"), ("GET", "/admin/config"), ("GET", "/metrics")]


def test_every_answer_carries_a_request_id(gateway):
    for method, path in PATHS:
        fresh = httpx.request(method, f"{gateway.url}{path}")
        assert fresh.headers.get("x-request-id"), (method, path, fresh.status_code)
        given = httpx.request(method, f"{gateway.url}{path}", headers={"x-request-id": "caller-id-7"})
        assert given.headers.get("x-request-id") == "caller-id-7", (method, path, given.status_code)
    # the SDK reads it as the request id of a model lookup, like OpenAI's own
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k", max_retries=0)
    raw = client.models.with_raw_response.retrieve("gpt-test")
    assert raw.parse().id == "gpt-test" and raw.headers.get("x-request-id")


def test_health_answers_like_healthz(gateway):
    a, b = httpx.get(f"{gateway.url}/healthz"), httpx.get(f"{gateway.url}/health")
    assert a.status_code == b.status_code == 200
    assert a.json() == b.json() == {"status": "ok"}
    assert b.headers["content-type"].startswith("application/json")


def test_a_timeout_says_which_backend_and_how_many_attempts(make_gateway, upstream):
    gw = make_gateway(gateway_config(upstream.url, backend_extra="    timeouts: {first_byte: 0.2}",
                                     extra="routing:\n  retry: {attempts: 2, base_backoff_ms: 1, max_backoff_ms: 1}\n"))
    upstream.hang()
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG}, timeout=30)
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
    assert r.headers["x-gateway-backend"] == "fake" and r.headers["x-gateway-attempts"] == "2"
    assert r.headers.get("x-request-id")


def test_an_unreachable_backend_says_so_in_the_headers_too(make_gateway):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
        gw = make_gateway(gateway_config(f"http://127.0.0.1:{s.getsockname()[1]}/v1",
                                         extra="routing:\n  retry: {attempts: 1}\n"))
        r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG})
    assert r.status_code == 502
    assert r.headers["x-gateway-backend"] == "fake" and r.headers["x-gateway-attempts"] == "1"


def test_admin_config_forgets_an_error_once_the_file_is_fixed(upstream, tmp_path):

    path = tmp_path / "gateway.yaml"
    good = gateway_config(upstream.url, extra="server: {reload_interval_s: 0.05}\n")
    path.write_text(good)
    with serve(path=path) as gw:
        def status():
            return httpx.get(f"{gw.url}/admin/config").json()

        before = status()["config_hash"]
        path.write_text(good.replace("targets: [{backend: fake, model: up-model}]", "targets: [{backend: nope}]"))
        # (the watcher may first catch the file half-written, "the file is empty": wait for the
        # error of the finished edit)
        wait_for(lambda: 'unknown backend "nope"' in (status()["last_error"] or ""), what="the reload error")
        path.write_text(good)  # the edit undone: the file is the config in force again
        wait_for(lambda: status()["last_error"] is None, what="the error to clear")
        assert status()["config_hash"] == before
