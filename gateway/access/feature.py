"""Access and plugins as gateway features, and the one HTTP guard in front of every route.

``AccessFeature`` contributes the access stage (keys, limits) for a config in ``keys`` mode,
compiles each config's keys and plugins before it is made current (refusing it when a plugin
cannot be built, or when a reload would silently turn authentication off), ``GET
/admin/access``, and closes limiters and plugins on shutdown. ``PluginsFeature`` checks the
plugin paths of each config and contributes the plugin stage for a config that lists enabled
plugins. Both read the one ``AccessLayer``.

``AccessFeature.middleware`` is the gateway's only aiohttp middleware; per request it:

- answers CORS preflights of ``server.cors_origins``;
- guards the whole ``/admin`` tree with the one admin check (``admin_guard``), applied once,
  before any handler: the bearer admin key, or the dashboard's session cookie where that is
  allowed (``admin_session``), or — without an admin key — local requests only; admin
  handlers never check again;
- in ``none`` mode refuses ``/v1`` requests a web page could have forged (``browser_guard``);
- in ``keys`` mode requires a key for the ``/v1`` routes outside the proxy pipeline
  (``GET /v1/models`` lists only the key's models; ``/v1/feedback``). Proxied requests are
  authenticated by the access stage instead, so their refusals get a row.
"""

from __future__ import annotations

from aiohttp import web

from gateway.access.admin_guard import GUARD
from gateway.access.auth import ACCESS, KEY, AccessLayer, bears_admin_key
from gateway.config import ConfigSnapshot
from gateway.core.feature import VISIBLE_MODELS, Feature, Routes
from gateway.inbound import protocol_of
from gateway.plugins.resolve import check_plugins

__all__ = ["AccessFeature", "PluginsFeature"]


class AccessFeature(Feature):
    """Keys, limits and the admin guard (``app[ACCESS]`` is the ``AccessLayer``)."""

    name = "access"

    def __init__(self, app: web.Application, snapshot: ConfigSnapshot, tokens=None):
        layer = self.layer = AccessLayer(snapshot, tokens)
        app[ACCESS] = layer
        app[GUARD] = layer.guard
        self.middleware = _middleware(layer)

    def compile(self, runtime) -> None:
        runtime.compiled[self.name] = self.layer.compile(runtime.snapshot)

    def stage(self, runtime):
        return self.layer.access_stage if runtime.compiled[self.name].policy.mode == "keys" else None

    def gate(self, runtime):
        """The stage in front of reading the request (``key_stage``), in ``keys`` mode."""
        return self.layer.key_stage if runtime.compiled[self.name].policy.mode == "keys" else None

    def activate(self, runtime) -> None:
        self.layer.activate(runtime.compiled[self.name])

    def discard(self, runtime) -> None:
        self.layer.discard(runtime.compiled[self.name])

    def routes(self, routes: Routes) -> None:
        layer = self.layer

        async def access_info(request: web.Request) -> web.Response:
            return web.json_response(await layer.describe())

        routes.admin_get("/admin/access", access_info)

    async def stop(self, app: web.Application) -> None:
        await self.layer.close()


class PluginsFeature(Feature):
    """The plugin stage, for a config with enabled plugins. ``compile`` checks every enabled
    plugin's path (a ``ConfigError`` naming ``plugins[i].path`` refuses the config), so it comes
    before ``AccessFeature`` in the compile order; ``AccessFeature.compile`` builds the plugins."""

    name = "plugins"

    def __init__(self, access: AccessFeature):
        self._access = access

    def compile(self, runtime) -> None:
        check_plugins(runtime.snapshot)

    def stage(self, runtime):
        compiled = runtime.compiled[self._access.name]
        return self._access.layer.plugin_stage if compiled.plugins is not None else None


def in_callers_shape(request: web.Request, refusal: web.Response) -> web.Response:
    """A refusal in OpenAI's shape made before the request reached its handler, in the shape of
    the API the request speaks (Anthropic's on ``/v1/messages``, and on ``/v1/models`` asked with
    ``anthropic-version``: its SDKs read no other)."""
    inbound = protocol_of(request.match_info.get("endpoint"), request.path, request.headers)
    if inbound is not None and isinstance(refusal.body, bytes):
        refusal.body = inbound.upstream_error(refusal.status, refusal.body)
    return refusal


def _middleware(layer: AccessLayer):
    guard = layer.guard

    @web.middleware
    async def access_middleware(request: web.Request, handler):
        path = request.path
        if request.method == "OPTIONS" and guard.browser.origins:
            preflight = guard.browser.preflight(request)
            if preflight is not None:
                return preflight
        if path.startswith("/admin") and (len(path) == 6 or path[6] == "/"):
            session = layer.admin_session
            if session is None or not session(request):  # the dashboard's cookie stands in for the key
                denied = await guard.check(request, layer.admin_key())
                if denied is not None:
                    return denied
        elif path.startswith("/v1/") and layer.policy.mode != "keys":
            # No key to check: refuse what a web page on another site could have sent.
            denied = guard.unauthenticated_denied(request)
            if denied is not None:
                return in_callers_shape(request, denied)
        elif path.startswith("/v1/") and layer.policy.mode == "keys" and "endpoint" not in request.match_info:
            # /v1 routes outside the proxy pipeline (which authenticates in its stage, so the
            # rejection gets a row): /v1/models, /v1/feedback, …
            key, denied = layer.route_key(request)
            if denied is not None and not (_admins(path) and bears_admin_key(request)):
                return in_callers_shape(request, denied)  # (the admin key may score any request, list every model)
            request[KEY] = key
            if key is not None:
                request[VISIBLE_MODELS] = key.allows  # /v1/models lists the key's models only
            return await handler(request)
        return await handler(request)

    return access_middleware


def _admins(path: str) -> bool:
    """The /v1 routes outside the proxy that the admin key may use: feedback on any request, the
    model list (every model: no key's ``models`` apply), and every retrieval collection's search."""
    return path == "/v1/feedback" or path == "/v1/models" or path.startswith(("/v1/models/", "/v1/collections/"))
