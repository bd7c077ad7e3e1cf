"""Access control: virtual keys → tenant policy, limits, plugin hooks, and the admin check.

``install_access(app, snapshot, stages, recompose)`` wires everything into the application and
returns the ``AccessLayer``; ``app.py`` calls ``layer.update(snapshot)`` for every config it
installs (start-up and each hot reload). Two request stages are registered only when the config
needs them, so a gateway without keys and plugins pays nothing:

- the **access stage** (first of all stages) when ``auth.mode`` is ``keys``: looks the client's
  key up by its SHA-256 (``Authorization: Bearer``, ``api-key`` or ``x-api-key``), answers 401
  for a missing/unknown/disabled key, 403 for a path outside the key's ``endpoints`` globs
  (``endpoint_not_allowed``) or a model outside its ``models`` globs (404 when no such model
  exists), sets ``ctx.tenant``, ``ctx.api_key_id`` (the key's id, never the key) and the key's
  metadata as soon as the key is known (refusals' rows carry them too),
  then admits the request against its limits (429 with ``Retry-After`` and OpenAI's
  ``x-ratelimit-*`` headers, which also go on every answer through ``ctx.response_headers``)
  and settles real usage and cost when the response has ended;
- the **plugin stage** (right after it) when ``plugins`` lists any enabled plugin.

A reload that turns either on inserts the stage then. ``access_middleware`` guards every
``/admin`` path with one check (``admin_guard``): ``Authorization: Bearer <server.admin_key>``
(compared in constant time, wrong keys slowed per client address), or local requests only while
no admin key is set. In ``none`` mode it refuses ``/v1`` requests a web page could have forged
(``browser_guard``); in ``keys`` mode it requires a key for ``GET /v1/models`` and lists only the
key's models. It also answers CORS preflights of ``server.cors_origins``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

from gateway import outcome
from gateway.admin_guard import GUARD, AdminGuard, guard_of
from gateway.config import ConfigSnapshot
from gateway.pipeline import StageList
from gateway.config.access import VirtualKey, all_keys, auth_mode
from gateway.context import RequestContext
from gateway.errors import AuthenticationError, PermissionDeniedError, RateLimitError
from gateway.limits import (
    TOO_LARGE, Limiter, LimitSpec, budget_headers, duration, estimate_tokens, rate_headers, usd,
)
from gateway.plugins import PluginChain, load_plugins
from gateway.pricing import PriceTable

log = logging.getLogger("gateway.auth")
_JSON = "application/json"
KEY_PREFIX = "sk-gw-"


# --- keys -----------------------------------------------------------------------------------
def new_key() -> str:
    """A new random virtual key (``sk-gw-`` + 43 URL-safe characters, 256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The hex SHA-256 stored in the config for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def presented_key(headers) -> str:
    """The key a client sent: ``Authorization: Bearer …``, else ``api-key``, else ``x-api-key``."""
    if headers is None:
        return ""
    auth = headers.get("Authorization")
    if auth:
        return auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    return (headers.get("api-key") or headers.get("x-api-key") or "").strip()


class KeyPolicy:
    """A ``VirtualKey`` compiled for the request path."""

    __slots__ = ("key_id", "tenant", "metadata", "spec", "limited", "_patterns", "_allowed", "disabled",
                 "endpoints", "_endpoint_ok")

    def __init__(self, key: VirtualKey):
        self.key_id = key.key_id
        self.tenant = key.tenant
        self.metadata = dict(key.metadata) if key.metadata else None
        budget = key.budget_usd
        self.spec = LimitSpec(key.key_id, key.rpm, key.tpm, key.max_concurrent,
                              budget.day if budget else None, budget.month if budget else None)
        self.limited = self.spec.any
        self._patterns = tuple(key.models)
        self._allowed: dict[str, bool] = {}
        self.disabled = key.disabled
        self.endpoints = key.endpoint_patterns
        self._endpoint_ok: dict[str, bool] = {}

    def allows(self, model: str) -> bool:
        ok = self._allowed.get(model)
        if ok is None:
            ok = any(fnmatch.fnmatchcase(model, p) for p in self._patterns)
            if len(self._allowed) < 4096:
                self._allowed[model] = ok
        return ok

    def allows_endpoint(self, endpoint: str) -> bool:
        """Whether the path below ``/v1/`` matches one of the key's ``endpoints`` globs."""
        ok = self._endpoint_ok.get(endpoint)
        if ok is None:
            ok = any(fnmatch.fnmatchcase(endpoint, p) for p in self.endpoints)
            if len(self._endpoint_ok) < 1024:
                self._endpoint_ok[endpoint] = ok
        return ok


class Grant:
    """What the access stage granted one request (``ctx.access``): the key and its reservation."""

    __slots__ = ("key", "tokens", "reserved", "decision")

    def __init__(self, key: KeyPolicy, tokens: int = 0, reserved: bool = False, decision=None):
        self.key = key
        self.tokens = tokens
        self.reserved = reserved
        self.decision = decision


class AccessPolicy:
    """One config's keys and settings, compiled."""

    def __init__(self, snapshot: ConfigSnapshot):
        cfg = snapshot.config
        self.snapshot = snapshot
        self.mode = auth_mode(cfg)
        self.keys = [KeyPolicy(k) for k in all_keys(cfg)]
        self.by_hash = {k.sha256: p for k, p in zip(all_keys(cfg), self.keys)}
        self.limits = cfg.limits
        self.any_limits = any(p.limited for p in self.keys)
        self.prices = PriceTable(cfg.pricing)
        self.model_names = list(cfg.models)
        self._models = frozenset(cfg.models)
        # Rules with targets of their own serve the names their ``match.model`` glob accepts.
        self._routed = tuple(r.match.model or "*" for r in cfg.routes if r.targets)

    def model_exists(self, model: str) -> bool:
        """Whether ``model`` names something this config serves (a public model, or a name a
        routing rule with its own targets accepts): a key refused for a model that does not
        exist is told so (404), not that it may not use it (403)."""
        return model in self._models or any(fnmatch.fnmatchcase(model, p) for p in self._routed)

    def authenticate(self, headers) -> KeyPolicy:
        token = presented_key(headers)
        if not token:
            raise AuthenticationError(
                "You didn't provide an API key. Send your gateway key in an Authorization header "
                "(Authorization: Bearer YOUR_KEY).", code="invalid_api_key")
        key = self.by_hash.get(hashlib.sha256(token.encode()).hexdigest())
        if key is None or key.disabled:
            # Never repeat the key, not even masked: the message may end up in client logs.
            raise AuthenticationError("Incorrect API key provided. Ask your gateway admin for a valid key.")
        return key


def _limit_error(spec: LimitSpec, d, model: str) -> RateLimitError:
    headers = rate_headers(spec, d)
    retry = max(1, int(-(-d.retry_after_s // 1)))  # whole seconds, rounded up
    headers["Retry-After"] = str(retry)
    headers["retry-after-ms"] = str(max(1, int(d.retry_after_s * 1000)))
    reason = d.reason
    if reason == "rpm":
        msg = (f"Rate limit reached for requests per minute (RPM) of this key: Limit {spec.rpm}. "
               f"Please try again in {duration(d.retry_after_s)}.")
        return RateLimitError(msg, type_="requests", headers=headers)
    if reason == "tpm":
        msg = (f"Rate limit reached for tokens per minute (TPM) of this key: Limit {spec.tpm}, "
               f"Remaining {max(0, int(d.tok_remaining or 0))}. Please try again in {duration(d.retry_after_s)}.")
        return RateLimitError(msg, type_="tokens", headers=headers)
    if reason == TOO_LARGE:
        headers.pop("Retry-After"), headers.pop("retry-after-ms")
        headers["x-should-retry"] = "false"
        return RateLimitError(f"Request too large for the tokens per minute (TPM) limit of this key: Limit "
                              f"{spec.tpm}. Reduce the prompt or max_tokens.", type_="tokens", headers=headers)
    if reason == "concurrency":
        return RateLimitError(f"Too many requests in flight for this key: Limit {spec.max_concurrent}. "
                              "Please retry when one has finished.", code="concurrency_limit_exceeded",
                              headers=headers)
    period, limit = ("day", spec.budget_day) if reason == "budget_day" else ("month", spec.budget_month)
    headers.update(budget_headers(limit, d.spent, d.retry_after_s))
    return RateLimitError(
        f"This key has used its budget per {period} (UTC): ${usd(d.spent)} of ${usd(limit)} spent. "
        f"It resets in {duration(d.retry_after_s)}.", type_="insufficient_quota", code="budget_exceeded",
        headers=headers)


# --- admin check -------------------------------------------------------------------------------
def admin_denied(request: web.Request, admin_key: str | None) -> web.Response | None:
    """The one admin check: ``None`` when ``request`` may use ``/admin/*``, else the 401/403/415 answer.

    With ``admin_key`` set the request needs ``Authorization: Bearer <admin_key>`` (virtual keys
    never pass); without it only local requests are let in (``admin_guard``). The middleware runs
    ``AdminGuard.check`` instead, which also slows wrong keys down.
    """
    return guard_of(request).denied(request, admin_key)


ACCESS = web.AppKey("access", object)  # the AccessLayer
ADMIN_OK = web.RequestKey("admin_ok", bool)  # the admin check passed
KEY = web.RequestKey("virtual_key", object)  # the KeyPolicy the middleware authenticated


def check_admin(request: web.Request, default_key: str | None = None) -> web.Response | None:
    """``admin_denied`` with the admin key in force (hot reloads included); for admin handlers.

    Handlers may call it freely: the middleware already ran it, so it costs a dict lookup.
    ``default_key``: the key to require on an application without the access layer.
    """
    if not isinstance(request, web.BaseRequest):  # a stand-in object (unit tests)
        return admin_denied(request, default_key)
    if request.get(ADMIN_OK):
        return None
    layer = request.app.get(ACCESS)
    denied = admin_denied(request, layer.admin_key() if layer is not None else default_key)
    if denied is None:
        request[ADMIN_OK] = True
    return denied


def bears_admin_key(request: web.Request, default_key: str | None = None) -> bool:
    """Whether ``request`` sends the configured admin key as ``Authorization: Bearer`` (never
    true without an admin key). ``default_key``: the key on an application without the access
    layer."""
    layer = request.app.get(ACCESS)
    admin_key = layer.admin_key() if layer is not None else default_key
    auth = request.headers.get("Authorization", "")
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    return bool(admin_key and token) and hmac.compare_digest(hashlib.sha256(token.encode()).digest(),
                                                             hashlib.sha256(admin_key.encode()).digest())


def authenticated_key(request: web.Request) -> "KeyPolicy | None":
    """The virtual key of a ``/v1`` request outside the proxy pipeline (``/v1/models``,
    ``/v1/feedback``): the middleware has checked it in ``keys`` mode (``.tenant``,
    ``.key_id``); ``None`` when auth is off."""
    return request.get(KEY)


# --- the layer ---------------------------------------------------------------------------------
class AccessLayer:
    """Access state of one application across config reloads (limits counters survive them)."""

    def __init__(self, snapshot: ConfigSnapshot, stages: StageList, recompose: Callable[[], None], tokens=None):
        self._stages = stages
        self._recompose = recompose
        self._tokens = tokens
        self.policy = AccessPolicy(snapshot)
        self.limiter: Limiter | None = None
        self.plugins: PluginChain | None = None
        self._plugin_specs: tuple = ()
        self._access_registered = False
        self._plugins_registered = False
        self._retired: list = []
        self._snapshot = snapshot
        self._warned_locked = False
        self._closing: set[asyncio.Task] = set()
        self.guard = AdminGuard(snapshot.config.server)  # admin check, trusted proxies, CORS origins

    # --- config ---------------------------------------------------------------------------
    def admin_key(self) -> str | None:
        return self._snapshot.config.server.admin_key

    def update(self, snapshot: ConfigSnapshot) -> None:
        """Compile ``snapshot`` and put it in force (``app.py`` calls it just before it swaps the
        runtime). Raises ``PluginLoadError`` on a plugin that cannot be built, before anything is
        swapped, so a reload is refused as a whole."""
        cfg = snapshot.config
        policy = AccessPolicy(snapshot)
        if self.policy.mode == "keys" and policy.mode == "none" and cfg.auth.mode is None:
            # An emptied or half-written file must not open the gateway: only an explicit
            # ``auth.mode: none`` turns keys off in a running gateway.
            raise ValueError("config reload refused: it has no keys, which would turn authentication off; "
                             "set auth.mode: none to do that on purpose")
        specs = tuple(cfg.plugins)
        chain = self.plugins
        if specs != self._plugin_specs:
            loaded = load_plugins(list(specs))
            chain = PluginChain(loaded) if loaded else None
        limiter = self.limiter
        if policy.any_limits and (limiter is None or not limiter.adopt(cfg.limits)):
            if limiter is not None:
                self._retired.append(limiter)
            limiter = Limiter(cfg.limits)
        # Swap in one go; then make sure the stages this config needs are in the pipeline.
        if chain is not self.plugins and self.plugins is not None:
            self._retired.append(self.plugins)
        self.policy, self.limiter, self.plugins, self._plugin_specs = policy, limiter, chain, specs
        self._snapshot = snapshot
        self.guard.update(cfg.server)
        changed = False
        if policy.mode == "keys" and not self._access_registered:
            self._stages.place(self.access_stage, "access")
            self._access_registered = changed = True
        if chain is not None and not self._plugins_registered:
            self._stages.place(self.plugin_stage, "plugins")
            self._plugins_registered = changed = True
        if changed:
            self._recompose()
        if policy.mode == "keys" and not policy.keys and not self._warned_locked:
            self._warned_locked = True
            log.warning("auth.mode is keys but no key is configured: every /v1 request answers 401")
        if self._retired:
            task = asyncio.get_running_loop().create_task(self._close_retired())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _close_retired(self) -> None:
        retired, self._retired = self._retired, []
        for item in retired:
            try:
                await item.close()
            except Exception as exc:
                log.warning("closing replaced %s failed (%s)", type(item).__name__, type(exc).__name__)

    async def close(self) -> None:
        for task in list(self._closing):
            await task
        if self.limiter is not None:
            await self.limiter.close()
        if self.plugins is not None:
            await self.plugins.close()
        await self._close_retired()

    # --- stages ---------------------------------------------------------------------------
    async def plugin_stage(self, ctx: RequestContext, call_next) -> web.StreamResponse:
        chain = self.plugins
        if chain is None:
            return await call_next(ctx)
        return await chain.stage(ctx, call_next)

    async def access_stage(self, ctx: RequestContext, call_next) -> web.StreamResponse:
        policy = self.policy
        if policy.mode != "keys":
            return await call_next(ctx)
        key = policy.authenticate(ctx.headers)
        # The caller is known from here on: its row carries them whatever happens next (403, 429).
        ctx.tenant = key.tenant
        ctx.api_key_id = key.key_id
        if key.metadata is not None:
            ctx.metadata = {**ctx.metadata, **key.metadata} if ctx.metadata else dict(key.metadata)
        if not key.allows_endpoint(ctx.endpoint):
            # Before the model and the limits: the backend's key must not reach account or
            # server-admin paths for a key that was not given them.
            raise PermissionDeniedError(f"This key may not use the endpoint /v1/{ctx.endpoint}. Ask your gateway "
                                        "admin to add it to the key's `endpoints`.", code="endpoint_not_allowed")
        model = ctx.model_requested
        if not key.allows(model):
            if not policy.model_exists(model):
                raise ctx.runtime.unknown_model(model)
            raise PermissionDeniedError(f"This key may not use the model `{model}`.", param="model")
        if not key.limited:
            ctx.access = Grant(key)
            return await call_next(ctx)
        limiter = self.limiter
        spec = key.spec
        tokens = 0
        if spec.tpm is not None:
            counter = self._tokens if policy.limits.token_estimate == "tiktoken" else None
            tokens = estimate_tokens(ctx.endpoint, ctx.body, policy.limits.default_max_tokens, counter)
        decision = await limiter.admit(spec, ctx.request_id, tokens)
        if not decision.ok:
            raise _limit_error(spec, decision, model)
        headers = rate_headers(spec, decision)
        if headers:
            ctx.response_headers = {**ctx.response_headers, **headers} if ctx.response_headers else headers
        grant = ctx.access = Grant(key, tokens, not decision.degraded, decision)
        try:
            response = await call_next(ctx)
        finally:
            self._settle(ctx, grant, limiter, policy)
        if headers and not response.prepared and next(iter(headers)) not in response.headers:
            response.headers.update(headers)  # an answer made by a later stage (a cache hit)
        return response

    def _settle(self, ctx: RequestContext, grant: Grant, limiter: Limiter, policy: AccessPolicy) -> None:
        spec = grant.key.spec
        try:
            usage = ctx.usage
            reported = usage.prompt_tokens is not None or usage.completion_tokens is not None
            if ctx.cache_status == "hit" or ctx.t_upstream_start is None or not (
                    reported or outcome.model_worked(ctx)):
                used, cost = 0, 0.0  # nothing reached a model, or it answered with an error
            else:
                if reported:
                    prompt, completion = usage.prompt_tokens or 0, usage.completion_tokens or 0
                    used = usage.total_tokens if usage.total_tokens is not None else prompt + completion
                else:  # no usage reported: the prompt estimate plus ~4 characters per token of output
                    text = sum(len(t) for t in ctx.completion_text)
                    completion = (text + 3) // 4
                    prompt = estimate_tokens(ctx.endpoint, ctx.body, None) if ctx.body else 0
                    used = prompt + completion
                cost = 0.0
                if spec.budgeted:
                    cost = policy.prices.cost((ctx.model_served, ctx.upstream_model, ctx.model_requested),
                                              prompt, completion, usage.cached_tokens) or 0.0
            delta = used - grant.tokens if spec.tpm is not None else 0
            limiter.settle(spec, ctx.request_id, delta, cost, grant.reserved)
        except Exception:  # never fail a finished request over bookkeeping
            log.exception("settling limits of request %s failed", ctx.request_id)

    # --- /v1/models and /admin/access ------------------------------------------------------
    def route_key(self, request: web.Request) -> tuple[KeyPolicy | None, web.Response | None]:
        """A ``/v1`` route outside the pipeline in ``keys`` mode: ``(key, None)``, or ``(None,
        401/403 answer)`` (``/v1/models/{id}`` of a model the key may not use: 403; of one that
        does not exist: the handler's 404, as for any caller)."""
        try:
            key = self.policy.authenticate(request.headers)
            name = request.match_info.get("model")
            if name is not None and not key.allows(name) and self.policy.model_exists(name):
                raise PermissionDeniedError(f"This key may not use the model `{name}`.", param="model")
        except (AuthenticationError, PermissionDeniedError) as exc:
            rid = request.headers.get("x-request-id") or str(uuid.uuid4())
            return None, web.Response(status=exc.status, body=exc.body(), content_type=_JSON,
                                      headers={"x-request-id": rid[:128]})
        return key, None

    @staticmethod
    def filtered_models(key: KeyPolicy, response: web.Response) -> web.Response:
        """The ``/v1/models`` listing cut down to the models ``key`` may use."""
        listing = orjson.loads(response.body)
        listing["data"] = [m for m in listing.get("data", ()) if key.allows(m.get("id", ""))]
        out = web.Response(body=orjson.dumps(listing), content_type=_JSON)
        if "x-request-id" in response.headers:
            out.headers["x-request-id"] = response.headers["x-request-id"]
        return out

    async def describe(self) -> dict:
        """``GET /admin/access``: mode, keys (ids, tenants, models, limits, usage), plugins, limiter."""
        policy = self.policy
        keys = []
        for k, p in zip(all_keys(policy.snapshot.config), policy.keys):
            entry: dict[str, Any] = {"id": p.key_id, "tenant": p.tenant, "models": list(k.models),
                                     "endpoints": list(p.endpoints), "disabled": k.disabled}
            for name in ("rpm", "tpm", "max_concurrent"):
                if getattr(k, name) is not None:
                    entry[name] = getattr(k, name)
            if k.budget_usd is not None:
                entry["budget_usd"] = k.budget_usd.model_dump(exclude_none=True)
            if k.metadata:
                entry["metadata"] = dict(k.metadata)
            if p.limited and self.limiter is not None:
                entry["usage"] = await self.limiter.usage(p.spec)
            keys.append(entry)
        limiter = self.limiter
        return {
            "mode": policy.mode,
            "keys": keys,
            "limits": None if limiter is None else {
                "store": "redis" if limiter.shared else "memory",
                "on_redis_error": policy.limits.on_redis_error, **limiter.stats},
            "plugins": self.plugins.stats() if self.plugins is not None else [],
        }


def install_access(app: web.Application, snapshot: ConfigSnapshot, stages: StageList,
                   recompose: Callable[[], None], tokens=None) -> AccessLayer:
    """Create the ``AccessLayer`` (``app[ACCESS]``), the admin/models middleware, ``GET
    /admin/access`` and the close-on-shutdown hook. The caller runs ``layer.update(snapshot)``
    for each config it installs, the first one included."""
    layer = AccessLayer(snapshot, stages, recompose, tokens)
    app[ACCESS] = layer
    guard = app[GUARD] = layer.guard
    app.on_response_prepare.append(guard.browser.add_cors_headers)

    @web.middleware
    async def access_middleware(request: web.Request, handler):
        path = request.path
        if request.method == "OPTIONS" and guard.browser.origins:
            preflight = guard.browser.preflight(request)
            if preflight is not None:
                return preflight
        if path.startswith("/admin") and (len(path) == 6 or path[6] == "/"):
            if not request.get(ADMIN_OK):  # not already admitted by the dashboard's session cookie
                denied = await guard.check(request, layer.admin_key())
                if denied is not None:
                    return denied
                request[ADMIN_OK] = True
        elif path.startswith("/v1/") and layer.policy.mode != "keys":
            # No key to check: refuse what a web page on another site could have sent.
            denied = guard.unauthenticated_denied(request)
            if denied is not None:
                return denied
        elif path.startswith("/v1/") and layer.policy.mode == "keys" and "endpoint" not in request.match_info:
            # /v1 routes outside the proxy pipeline (which authenticates in its stage, so the
            # rejection gets a row): /v1/models, /v1/feedback, …
            key, denied = layer.route_key(request)
            if denied is not None and not (path == "/v1/feedback" and bears_admin_key(request)):
                return denied  # (the admin key may score any request)
            request[KEY] = key
            response = await handler(request)
            if path == "/v1/models" and response.status == 200 and not response.prepared \
                    and isinstance(response.body, bytes):
                return layer.filtered_models(key, response)
            return response
        return await handler(request)

    app.middlewares.append(access_middleware)

    async def access_info(request: web.Request) -> web.Response:
        if (denied := check_admin(request)) is not None:
            return denied
        return web.json_response(await layer.describe())

    app.router.add_get("/admin/access", access_info)

    async def lifecycle(app: web.Application):
        yield
        await layer.close()

    app.cleanup_ctx.append(lifecycle)
    return layer


_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]+(@)")


def public_config(model: Any) -> Any:
    """A JSON-ready dump of a config model for admin output: every field declared with
    ``repr=False`` (provider keys, backend headers, the admin key, DSNs, Redis URLs, key hashes)
    is masked as ``"***"``, and passwords inside any URL are masked too."""
    if isinstance(model, BaseModel):
        out = {}
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if not field.repr and value:
                out[name] = {k: "***" for k in value} if isinstance(value, dict) else "***"
            else:
                out[name] = public_config(value)
        return out
    if isinstance(model, dict):
        return {str(k): public_config(v) for k, v in model.items()}
    if isinstance(model, (list, tuple)):
        return [public_config(v) for v in model]
    if isinstance(model, str):
        return _URL_PASSWORD.sub(r"\1***\2", model) if "@" in model else model
    return model


def warn_if_open(snapshot: ConfigSnapshot, host: str) -> bool:
    """Log a loud warning when ``auth.mode`` is ``none`` and ``host`` is not loopback.

    Returns whether it warned (``serve`` calls it with the address it binds)."""
    if auth_mode(snapshot.config) != "none":
        return False
    try:
        loopback = host in ("localhost",) or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return False
    line = "!" * 78
    log.warning("\n%s\n  AUTH IS OFF (auth.mode: none) and the gateway listens on %s:\n"
                "  anyone who can reach it can spend your provider keys. Configure `keys`\n"
                "  (llm-gateway keys create --tenant NAME) or bind to 127.0.0.1.\n%s", line, host, line)
    return True


__all__ = ["ACCESS", "AccessLayer", "AccessPolicy", "Grant", "KeyPolicy", "admin_denied", "authenticated_key",
           "check_admin", "hash_key", "install_access", "new_key", "presented_key", "public_config", "warn_if_open"]
