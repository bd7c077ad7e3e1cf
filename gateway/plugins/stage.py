"""Plugin hooks: small policy objects teams add without touching the gateway.

A plugin is any object with one or both of::

    async def before_request(self, request) -> Verdict | None   # allow / modify / reject
    async def after_response(self, request, response) -> None  # observe (or adjust an unsent body)

listed under ``plugins:`` in the config by ``path`` (``package.module:attr``, ``file.py:attr``
or a built-in name, see ``BUILTINS``) with its ``settings`` (keyword arguments for a class or
factory). Each call is bounded by ``timeout_ms``; a hook that raises, times out or returns
something that is not a ``Verdict`` follows its ``on_error`` (``allow``: go on, ``reject``: 503)
and is counted. Hooks run in config order after authentication (``request.tenant`` and
``request.api_key_id`` are set); ``tenants`` limits a plugin to some tenants. Hooks see a
``gateway.plugin_api.PluginRequest``, never the mutable ``RequestContext``: what a plugin may
use is ``gateway.plugin_api``.

A ``modify`` verdict replaces ``ctx.body`` (or keeps an in-place change) and marks the body
changed, so upstreams, the cache and logged bodies all see the modified request, never the
client's original bytes; without one the upstream receives the client's bytes. A changed
``model`` is checked against the key's allowed models again.
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.config.access import PluginSpec
from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError, PermissionDeniedError, PolicyRejectedError, ServiceUnavailableError
from gateway.core.request_body import mark_mutated
from gateway.plugin_api import PluginRequest, Verdict
from gateway.plugins.resolve import BUILTINS, ENTRY_POINT_GROUP, PluginLoadError, resolve

log = logging.getLogger("gateway.plugins")

def build_plugin(spec: PluginSpec) -> Any:
    """Import and construct the plugin object of ``spec`` (raises ``PluginLoadError``)."""
    try:
        target = resolve(spec.path)
        if isinstance(target, type) or (callable(target) and not _has_hook(target)):
            obj = target(**spec.settings)
        else:
            if spec.settings:
                raise PluginLoadError("settings given, but the path names an object, not a class or factory")
            obj = target
    except PluginLoadError:
        raise
    except Exception as exc:
        raise PluginLoadError(f"{type(exc).__name__}: {exc}") from None
    if not _has_hook(obj):
        raise PluginLoadError("the object has neither before_request nor after_response")
    return obj


def _has_hook(obj: Any) -> bool:
    return callable(getattr(obj, "before_request", None)) or callable(getattr(obj, "after_response", None))


@dataclass(slots=True)
class LoadedPlugin:
    """A built plugin with its settings and counters."""

    spec: PluginSpec
    obj: Any
    name: str
    timeout_s: float
    reject_on_error: bool
    before: Any = None
    after: Any = None
    tenants: tuple[str, ...] | None = None
    stats: dict[str, int] = field(default_factory=lambda: {
        "calls": 0, "allowed": 0, "modified": 0, "rejected": 0, "errors": 0, "timeouts": 0})

    def applies(self, tenant: str) -> bool:
        return self.tenants is None or any(fnmatch.fnmatchcase(tenant, p) for p in self.tenants)


def load_plugins(specs: list[PluginSpec]) -> list[LoadedPlugin]:
    """Build every enabled plugin; raises ``PluginLoadError`` naming ``plugins[i]``."""
    out = []
    for i, spec in enumerate(specs):
        if not spec.enabled:
            continue
        try:
            obj = build_plugin(spec)
        except PluginLoadError as exc:
            raise PluginLoadError(f"plugins[{i}] ({spec.path}): {exc}") from None
        out.append(LoadedPlugin(spec, obj, spec.label, spec.timeout_ms / 1000, spec.on_error == "reject",
                                getattr(obj, "before_request", None), getattr(obj, "after_response", None),
                                tuple(spec.tenants) if spec.tenants is not None else None))
    return out


class PluginChain:
    """The plugins of one config as a request stage (``stage``), with their counters."""

    def __init__(self, plugins: list[LoadedPlugin]):
        self.plugins = plugins
        self.before = [p for p in plugins if p.before is not None]
        self.after = [p for p in plugins if p.after is not None]

    def _failed(self, p: LoadedPlugin, hook: str, exc: BaseException | None) -> None:
        if exc is None:
            p.stats["timeouts"] += 1
            what = f"timed out after {p.timeout_s * 1000:g} ms"
        else:
            p.stats["errors"] += 1
            what = f"failed ({type(exc).__name__})"
        action = "rejecting the request" if p.reject_on_error else "allowing the request"
        log.warning("plugin %s %s %s; %s", p.name, hook, what, action)
        if p.reject_on_error:
            raise ServiceUnavailableError(f"A policy check of this gateway ({p.name}) is unavailable; "
                                          "the request was not sent.", code="plugin_failed")

    async def _run_before(self, p: LoadedPlugin, request: PluginRequest) -> Verdict | None:
        p.stats["calls"] += 1
        try:
            async with asyncio.timeout(p.timeout_s):
                verdict = p.before(request)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
        except TimeoutError:
            self._failed(p, "before_request", None)
            return None
        except GatewayError:
            raise
        except Exception as exc:
            self._failed(p, "before_request", exc)
            return None
        if verdict is not None and not isinstance(verdict, Verdict):
            self._failed(p, "before_request", TypeError("returned something other than a Verdict or None"))
            return None
        return verdict

    async def stage(self, ctx: RequestContext, call_next) -> web.StreamResponse:
        tenant = ctx.tenant
        request = PluginRequest(ctx)
        for p in self.before:
            if p.tenants is not None and not p.applies(tenant):
                continue
            verdict = await self._run_before(p, request)
            if verdict is None or verdict.action == "allow":
                p.stats["allowed"] += 1
            elif verdict.action == "reject":
                p.stats["rejected"] += 1
                raise PolicyRejectedError(verdict.message or f"The request was rejected by policy ({p.name}).",
                                          status=verdict.status, code=verdict.code)
            else:
                p.stats["modified"] += 1
                self._apply(ctx, request, verdict)
        response = await call_next(ctx)
        for p in self.after:
            if p.tenants is not None and not p.applies(tenant):
                continue
            await self._run_after(p, request, response)
        return response

    @staticmethod
    def _apply(ctx: RequestContext, request: PluginRequest, verdict: Verdict) -> None:
        body = verdict.body if verdict.body is not None else request.body
        if not isinstance(body, dict):
            raise ServiceUnavailableError("A policy plugin produced an invalid request.", code="plugin_failed")
        model = body.get("model")
        if model != ctx.model_requested:
            if not isinstance(model, str) or not model:
                raise ServiceUnavailableError("A policy plugin removed the model.", code="plugin_failed")
            grant = ctx.access
            if grant is not None and not grant.key.allows(model):
                raise PermissionDeniedError(f"This key may not use the model `{model}`.", param="model")
            ctx.model_requested = model
        if body is ctx.body:
            mark_mutated(body)  # changed in place: re-encoded, never the client's bytes
        else:
            ctx.body = request.body = body  # a new dict: read as changed by the forwarder and telemetry
        ctx.stream = body.get("stream") is True

    async def _run_after(self, p: LoadedPlugin, request: PluginRequest, response: web.StreamResponse) -> None:
        p.stats["calls"] += 1
        try:
            async with asyncio.timeout(p.timeout_s):
                result = p.after(request, response)
                if inspect.isawaitable(result):
                    await result
            p.stats["allowed"] += 1
        except TimeoutError:
            if not response.prepared:
                self._failed(p, "after_response", None)
            else:
                p.stats["timeouts"] += 1
                log.warning("plugin %s after_response timed out after %g ms", p.name, p.timeout_s * 1000)
        except Exception as exc:
            if not response.prepared:
                self._failed(p, "after_response", exc)
            else:
                p.stats["errors"] += 1
                log.warning("plugin %s after_response failed (%s)", p.name, type(exc).__name__)

    def stats(self) -> list[dict]:
        return [{"name": p.name, "path": p.spec.path, "on_error": p.spec.on_error,
                 "timeout_ms": p.spec.timeout_ms, **p.stats} for p in self.plugins]

    async def close(self) -> None:
        for p in self.plugins:
            closer = getattr(p.obj, "close", None)
            if callable(closer):
                try:
                    result = closer()
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    log.warning("plugin %s close failed (%s)", p.name, type(exc).__name__)


__all__ = ["BUILTINS", "ENTRY_POINT_GROUP", "LoadedPlugin", "PluginChain", "PluginLoadError", "Verdict",
           "build_plugin", "load_plugins", "resolve"]
