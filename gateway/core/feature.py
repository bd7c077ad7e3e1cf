"""The ``Feature`` interface: how a feature plugs into the gateway, in one place.

Every feature (access, prompts, plugins, cache, chains, telemetry, observability, the vLLM
fleet, the dashboard, the admin views of config and routing) is one object with the same few
hooks, and ``gateway.app`` lists them once, in request order. Nothing else hooks into a
request: no attributes set on the handlers from outside, no middlewares slipped in front, no
stage lists re-sorted at start-up or on a reload. So the order a request meets the features is
the order of that list, and a reader (or a code-reading tool) can follow it from there.

A feature contributes:

- ``stage(runtime)``: its request stage for that compiled config (``pipeline.Stage``), or
  ``None`` when the config leaves it off. The stages of a config are composed once, when the
  config is compiled; a feature that is off is not in the chain, so it costs a request nothing.
- ``finishers(runtime)``: what runs once per request of that config after its response ended
  (a row, metrics, a span); empty when off, so a request of that config makes no call to it.
- ``compile(runtime)``: work a new config needs, done before it is made current (build a
  policy, load plugins). Raising refuses the config: a reload is refused as a whole and the
  running config stays. It must not change what requests see; ``activate`` does that, and
  ``discard(runtime)`` frees what it built when another feature refused the config.
- ``activate(runtime)``: the config is now current; put what ``compile`` prepared in force.
  Called right after the swap, with no ``await`` in between, so no request sees half of it.
- ``routes(routes)``: its HTTP routes. ``routes.admin_get``/``admin_post`` take ``/admin/…``
  paths only: every one of them is behind the one admin check (``gateway.access.feature``), applied once
  per request before any handler, so handlers never check again.
- ``start(app)`` / ``stop(app)``: open and close what it holds (sinks, stores, servers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.core.context import RequestContext
from gateway.core.pipeline import Stage

if TYPE_CHECKING:
    from gateway.proxy.runtime import Runtime

Finisher = Callable[[RequestContext], None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ADMIN_PREFIX = "/admin/"
# Which public models the caller of ``GET /v1/models`` may see (a name → bool test), set by the
# feature that knows the caller (access, in ``keys`` mode); absent: every model.
VISIBLE_MODELS: web.RequestKey[Callable[[str], bool]] = web.RequestKey("visible_models")


class Routes:
    """Where features register their routes, before the gateway's catch-all ones."""

    def __init__(self, router: web.UrlDispatcher):
        self._router = router

    def admin_get(self, path: str, handler: Handler) -> None:
        self._router.add_get(self._admin(path), handler)

    def admin_post(self, path: str, handler: Handler) -> None:
        self._router.add_post(self._admin(path), handler)

    def get(self, path: str, handler: Handler) -> None:
        self._router.add_get(self._public(path), handler)

    def post(self, path: str, handler: Handler) -> None:
        self._router.add_post(self._public(path), handler)

    @staticmethod
    def _admin(path: str) -> str:
        # The admin check covers exactly the /admin tree: an admin route elsewhere would be open.
        if not path.startswith(ADMIN_PREFIX):
            raise ValueError(f"admin route {path!r} must be under {ADMIN_PREFIX}")
        return path

    @staticmethod
    def _public(path: str) -> str:
        if path == "/admin" or path.startswith(ADMIN_PREFIX):
            raise ValueError(f"{path!r} is an admin path: register it with admin_get/admin_post")
        return path


class Feature:
    """Base class: every hook does nothing, so a feature overrides only what it uses."""

    name = "feature"

    def stage(self, runtime: Runtime) -> Stage | None:
        return None

    def finishers(self, runtime: Runtime) -> Sequence[Finisher]:
        return ()

    def compile(self, runtime: Runtime) -> None:
        pass

    def activate(self, runtime: Runtime) -> None:
        pass

    def discard(self, runtime: Runtime) -> None:
        pass

    def routes(self, routes: Routes) -> None:
        pass

    async def start(self, app: web.Application) -> None:
        pass

    async def stop(self, app: web.Application) -> None:
        pass


def active_stages(features: Sequence[Feature], runtime: Any) -> list[Stage]:
    """The stages ``features`` contribute for ``runtime``'s config, in list order."""
    return [s for f in features if (s := f.stage(runtime)) is not None]
