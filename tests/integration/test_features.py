"""The composition root: each config's request path holds only the features it turns on, a
reload compiles every feature before the swap (none of it on the request path), and every
admin route sits behind the one admin check."""

from __future__ import annotations

import httpx
import pytest
from aiohttp import web

from gateway.app import FEATURES, FINISHERS, RUNTIME, WATCHER, build_app
from gateway.cache import CACHE
from gateway.config import load_config, parse_config
from gateway.core.feature import Routes
from gateway.prompts.stage import prompt_stage
from gateway.proxy.server import BackgroundServer
from tests.support.gateway import gateway_config
from tests.support.polling import wait_for

CHAT = {"id": "c1", "object": "chat.completion", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
DET = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
QUIET = "telemetry: {enabled: false}\nobservability: {metrics: {enabled: false}}\n"


def feature(app: web.Application, name: str):
    return next(f for f in app[FEATURES] if f.name == name)


def test_features_that_are_off_are_not_in_the_request_path(upstream):
    """No keys, plugins, cache, chains, telemetry, metrics or access log: a request meets the
    prompt stage (it interprets a ``prompt`` field) and, as the config has a backend that
    translates the Responses API (the mock), the conversations stage (``previous_response_id``;
    other endpoints pass it after one comparison), and nothing else, and no finisher."""
    app = build_app(parse_config(gateway_config(upstream.url, extra=QUIET)))
    with BackgroundServer(app) as gw:
        assert app[RUNTIME].current.stages == (prompt_stage, feature(app, "conversations").conversations)
        assert app[RUNTIME].current.finishers == () and app[FINISHERS] == []
        upstream.json(CHAT)
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=DET)
        assert r.status_code == 200 and "x-gateway-cache" not in r.headers


def test_a_reload_recomposes_the_path_and_compiles_the_cache_before_the_swap(upstream, tmp_path):
    path = tmp_path / "gateway.yaml"
    base = gateway_config(upstream.url, extra=QUIET + "server: {reload_interval_s: 0.05}\n")
    path.write_text(base)
    app = build_app(load_config(path))
    cache = app[CACHE]
    with BackgroundServer(app) as gw:
        def rewrite(extra: str):
            reloads = app[WATCHER].reloads
            path.write_text(base + extra)
            wait_for(lambda: app[WATCHER].reloads > reloads, what="the reload")
            return app[RUNTIME].current

        assert cache not in app[RUNTIME].current.stages
        rt = rewrite("cache: {enabled: true}\n")
        # In force as soon as the config is: no request needed to compile it or open the store.
        assert cache in rt.stages and cache.describe()["enabled"] is True and cache.store is not None
        upstream.json(CHAT)
        statuses = [httpx.post(f"{gw.url}/v1/chat/completions", json=DET).headers["x-gateway-cache"]
                    for _ in range(2)]
        wait_for(lambda: not (cache.flights or cache._tasks), what="pending cache writes")
        assert statuses[0] == "miss"
        rt = rewrite("")
        assert cache not in rt.stages and cache.store is None and cache.describe()["enabled"] is False
        assert "x-gateway-cache" not in httpx.post(f"{gw.url}/v1/chat/completions", json=DET).headers


def test_a_refused_config_swaps_nothing(upstream, tmp_path):
    path = tmp_path / "gateway.yaml"
    base = gateway_config(upstream.url, extra=QUIET + "server: {reload_interval_s: 0.05}\n")
    path.write_text(base)
    app = build_app(load_config(path))
    with BackgroundServer(app):
        before = app[RUNTIME].current
        path.write_text(base + "cache: {enabled: true}\nplugins: [{path: \"no_such_module_xyz:Plugin\"}]\n")
        wait_for(lambda: app[WATCHER].last_error, what="the refusal")
        assert app[RUNTIME].current is before
        assert app[CACHE].describe()["enabled"] is False and app[CACHE].store is None


def test_admin_routes_live_under_admin_only():
    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    routes = Routes(web.Application().router)
    with pytest.raises(ValueError):
        routes.admin_get("/dashboard/data", handler)  # outside /admin: the admin check would not cover it
    with pytest.raises(ValueError):
        routes.get("/admin/open", handler)  # a public route cannot hide in the admin tree
    routes.admin_get("/admin/x", handler)
    routes.get("/x", handler)


def test_every_admin_route_is_behind_the_one_check(upstream):
    app = build_app(parse_config(gateway_config(upstream.url, extra="server: {admin_key: sk-admin-1}\n")))
    with BackgroundServer(app) as gw:
        admin = sorted({(r.method, r.resource.canonical) for r in app.router.routes()
                        if r.resource is not None and r.resource.canonical.startswith("/admin")})
        assert len(admin) >= 20  # every feature registered its admin routes
        for method, path in admin:
            url = gw.url + path.replace("{id}", "x")
            assert httpx.request(method, url, timeout=30).status_code == 401, path
            r = httpx.request(method, url, headers={"Authorization": "Bearer sk-admin-1"}, json={}, timeout=30)
            assert r.status_code != 401, path


class Closable:
    """A plugin that records being closed."""

    closed: list[str] = []

    def __init__(self, tag: str = ""):
        self.tag = tag

    async def before_request(self, request):
        return None

    def close(self):
        Closable.closed.append(self.tag)


def test_plugins_compiled_for_a_refused_config_are_closed(upstream):
    """A config refused after access compiled it (by a later feature) leaves no plugin open."""
    from gateway.access.auth import ACCESS

    app = build_app(parse_config(gateway_config(upstream.url, extra=QUIET)))
    with BackgroundServer(app) as gw:
        layer = app[ACCESS]
        snapshot = parse_config(gateway_config(upstream.url, extra=QUIET + 'plugins: [{path: '
                                               '"tests.integration.test_features:Closable", settings: {tag: refused}}]\n'))
        compiled = layer.compile(snapshot)
        assert compiled.plugins is not None and layer.plugins is None
        Closable.closed.clear()
        gw.call(_discard(layer, compiled))
        assert Closable.closed == ["refused"] and layer.plugins is None


async def _discard(layer, compiled) -> None:
    layer.discard(compiled)
    for task in list(layer._closing):
        await task
