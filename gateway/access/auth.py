"""Access control: virtual keys → tenant policy, limits, plugin hooks, and the admin check.

``AccessLayer`` holds one application's access state across reloads; ``gateway.access.feature``
plugs it into the gateway (stages, the middleware, ``GET /admin/access``). Each config is
compiled (``compile``: may refuse it) before it is made current and put in force after
(``activate``). Two request stages exist only for a config that needs them, so a gateway
without keys and plugins pays nothing:

- the **access stage** (first of all stages) when ``auth.mode`` is ``keys``: looks the client's
  key up by its SHA-256 (``Authorization: Bearer``, ``api-key`` or ``x-api-key``; on a path that
  names no model the admin key too, which reaches every stored object), answers 401
  for a missing/unknown/disabled key, 403 for a path outside the key's ``endpoints`` globs
  (``endpoint_not_allowed``) or a model outside its ``models`` globs (404 when no such model
  exists), sets ``ctx.tenant``, ``ctx.api_key_id`` (the key's id, never the key) and the key's
  metadata as soon as the key is known (refusals' rows carry them too),
  then admits the request against its limits (429 with ``Retry-After`` and OpenAI's
  ``x-ratelimit-*`` headers, which also go on every answer through ``ctx.response_headers``)
  and settles real usage and cost when the response has ended;
- the **plugin stage** (right after it) when ``plugins`` lists any enabled plugin.

The admin check itself (``admin_denied``; ``admin_guard``): ``Authorization: Bearer
<server.admin_key>`` (compared in constant time, wrong keys slowed per client address), or local
requests only while no admin key is set.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.access.admin_guard import AdminGuard, guard_of
from gateway.access.keys import AccessPolicy, Grant, KeyPolicy
from gateway.access.limits import (
    TOO_LARGE,
    Limiter,
    LimitSpec,
    budget_headers,
    duration,
    estimate_tokens,
    rate_headers,
    usd,
)
from gateway.config import ConfigSnapshot
from gateway.config.access import all_keys, auth_mode
from gateway.core import outcome
from gateway.core.context import RequestContext
from gateway.core.errors import AuthenticationError, PermissionDeniedError, RateLimitError
from gateway.plugins.stage import PluginChain, load_plugins

log = logging.getLogger("gateway.auth")
_JSON = "application/json"


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
    assert limit is not None and d.spent is not None  # a budget refusal: the key has that budget
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


KEY = web.RequestKey("virtual_key", object)  # the KeyPolicy the middleware authenticated


def delegate(ctx: RequestContext, grant: Grant | KeyPolicy) -> None:
    """Run the in-process request ``ctx`` as the caller ``grant`` (its ``Grant``, or a
    ``KeyPolicy``) already checked: the access stage takes that key instead of reading one
    from the headers, and skips the endpoint and model checks (what the caller was allowed
    covers the call: a retrieval collection's embeddings). Limits and budget still apply. The
    admin key's calls keep the tenant ``ctx`` already names (a collection's)."""
    ctx.access = Grant(grant.key if isinstance(grant, Grant) else grant)


def bears_admin_key(request: web.Request, default_key: str | None = None) -> bool:
    """Whether ``request`` sends the configured admin key as ``Authorization: Bearer`` (never
    true without an admin key). ``default_key``: the key on an application without the access
    layer."""
    layer = request.app.get(ACCESS)
    admin_key = layer.admin_key() if layer is not None else default_key
    auth = request.headers.get("Authorization", "")
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if not admin_key or not token:
        return False
    return hmac.compare_digest(hashlib.sha256(token.encode()).digest(), hashlib.sha256(admin_key.encode()).digest())


def authenticated_key(request: web.Request) -> KeyPolicy | None:
    """The virtual key of a ``/v1`` request outside the proxy pipeline (``/v1/models``,
    ``/v1/feedback``): the middleware has checked it in ``keys`` mode (``.tenant``,
    ``.key_id``); ``None`` when auth is off."""
    return request.get(KEY)


# --- the layer ---------------------------------------------------------------------------------
class Compiled:
    """What ``AccessLayer.compile`` made of one config, waiting to be put in force."""

    __slots__ = ("snapshot", "policy", "plugins", "specs")

    def __init__(self, snapshot: ConfigSnapshot, policy: AccessPolicy, plugins: PluginChain | None, specs: tuple):
        self.snapshot, self.policy, self.plugins, self.specs = snapshot, policy, plugins, specs


class AccessLayer:
    """Access state of one application across config reloads (limits counters survive them)."""

    def __init__(self, snapshot: ConfigSnapshot, tokens=None):
        self._tokens = tokens
        self.policy = AccessPolicy(snapshot)
        self.limiter: Limiter | None = None
        self.plugins: PluginChain | None = None
        self._plugin_specs: tuple = ()
        self._retired: list = []
        self._snapshot = snapshot
        self._warned_locked = False
        self._closing: set[asyncio.Task] = set()
        self.guard = AdminGuard(snapshot.config.server)  # admin check, trusted proxies, CORS origins
        # Another credential the admin check accepts (the dashboard's session cookie), or None.
        self.admin_session: Callable[[web.Request], bool] | None = None

    # --- config ---------------------------------------------------------------------------
    def admin_key(self) -> str | None:
        return self._snapshot.config.server.admin_key

    def compile(self, snapshot: ConfigSnapshot) -> Compiled:
        """Compile ``snapshot``'s keys, limits and plugins, changing nothing in force. Raises
        (``PluginLoadError``, ``ValueError``) on a config that must be refused as a whole."""
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
        return Compiled(snapshot, policy, chain, specs)

    def activate(self, compiled: Compiled) -> None:
        """Put ``compiled`` in force (its config was just made current); limits counters carry
        over when the limits store is unchanged. Replaced plugins and limiters close later."""
        cfg = compiled.snapshot.config
        policy, chain = compiled.policy, compiled.plugins
        limiter = self.limiter
        if policy.any_limits and (limiter is None or not limiter.adopt(cfg.limits)):
            if limiter is not None:
                self._retired.append(limiter)
            limiter = Limiter(cfg.limits)
        if chain is not self.plugins and self.plugins is not None:
            self._retired.append(self.plugins)
        self.policy, self.limiter, self.plugins, self._plugin_specs = policy, limiter, chain, compiled.specs
        self._snapshot = compiled.snapshot
        self.guard.update(cfg.server)
        if policy.mode == "keys" and not policy.keys and not self._warned_locked:
            self._warned_locked = True
            log.warning("auth.mode is keys but no key is configured: every /v1 request answers 401")
        if self._retired:
            task = asyncio.get_running_loop().create_task(self._close_retired())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def discard(self, compiled: Compiled) -> None:
        """``compiled`` will not be put in force (the config was refused): close its new plugins."""
        if compiled.plugins is not None and compiled.plugins is not self.plugins:
            self._retired.append(compiled.plugins)
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

    async def key_stage(self, ctx: RequestContext, call_next) -> web.StreamResponse:
        """In front of reading the request (``AccessFeature.gate``): a caller without a valid key
        is refused 401 before its body is read or judged, so it learns nothing from a 400. (The
        admin key passes here; the access stage decides once the body shows whether it may
        stand in.) The access stage checks the key again: one hash of a short token."""
        policy = self.policy
        if policy.mode == "keys":
            policy.authenticate(ctx.headers, True)
        return await call_next(ctx)

    async def access_stage(self, ctx: RequestContext, call_next) -> web.StreamResponse:
        policy = self.policy
        if policy.mode != "keys":
            return await call_next(ctx)
        how = ctx.passthrough
        handed = ctx.access  # set before this stage only by ``delegate``: a call made in-process
        key = handed.key if handed is not None else \
            policy.authenticate(ctx.headers, how is not None and not ctx.model_requested)
        # The caller is known from here on: its row carries them whatever happens next (403, 429).
        ctx.tenant = (ctx.tenant or key.tenant) if key.admin else key.tenant
        ctx.api_key_id = key.key_id
        if key.metadata is not None:
            ctx.metadata = {**ctx.metadata, **key.metadata} if ctx.metadata else dict(key.metadata)
        if handed is not None:
            pass  # what its caller was allowed covers this call (a searched collection, its embeddings model)
        elif not key.allows_endpoint(ctx.endpoint, how is None or how.method == "POST"):
            # Before the model and the limits: the backend's key must not reach account or
            # server-admin paths for a key that was not given them.
            raise PermissionDeniedError(f"This key may not use the endpoint /v1/{ctx.endpoint}. Ask your gateway "
                                        "admin to add it to the key's `endpoints`.", code="endpoint_not_allowed")
        model = ctx.model_requested
        if model and handed is None and not key.allows(model):  # no model: a passthrough path (``endpoints``)
            if not policy.model_exists(model):
                raise ctx.runtime.unknown_model(model)
            raise PermissionDeniedError(f"This key may not use the model `{model}`.", param="model")
        if not key.limited:
            ctx.access = Grant(key)
            return await call_next(ctx)
        limiter = self.limiter
        assert limiter is not None  # a limited key exists only with a limiter
        spec = key.spec
        tokens = 0
        if spec.tpm is not None and ctx.body is not None:
            counter = self._tokens if policy.limits.token_estimate == "tiktoken" else None
            if counter is not None and not counter.ready(model):  # loaded on first use, off the loop
                await asyncio.to_thread(counter.load, model)
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
            reported = usage.reported()
            if ctx.cache_status in ("hit", "semantic_hit") or ctx.t_upstream_start is None or not (
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
                                              prompt, completion, usage.cached_tokens,
                                              usage.cache_write_tokens, usage) or 0.0
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


ACCESS = web.AppKey("access", AccessLayer)


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


__all__ = ["ACCESS", "AccessLayer", "Compiled", "admin_denied", "authenticated_key", "bears_admin_key",
           "delegate", "warn_if_open"]
