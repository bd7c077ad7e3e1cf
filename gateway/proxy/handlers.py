"""Thin HTTP handlers for the OpenAI-compatible API: ``ProxyHandlers`` reads and checks the request, resolves
the model, forwards to the backend and relays the answer (``gateway.proxy.relay``: a JSON body whole, a stream
event by event through ``StreamTee``). Errors the gateway raises itself are answered in OpenAI's error format;
upstream error responses are passed through with their status (wrapped in OpenAI's shape when they are not
already). Every response carries ``x-request-id``; proxied ones also ``x-gateway-backend``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from gateway.core import outcome
from gateway.core.context import RequestContext
from gateway.core.errors import NOT_JSON, GatewayError, InvalidRequestError, NotFoundError, PayloadTooLargeError
from gateway.core.feature import VISIBLE_MODELS
from gateway.core.pipeline import Handler
from gateway.core.request_body import RequestBody, client_body
from gateway.inbound import INBOUND, Inbound, StreamObserver, protocol_of
from gateway.inbound.anthropic.models import created_at, model_info, model_page
from gateway.prompts.inject import experiment_key
from gateway.proxy.attempts import run_attempts
from gateway.proxy.duplicate_keys import case_variant_key, duplicated_model
from gateway.proxy.passthrough import check_encoding, is_form, model_less, read_body, read_other, send_passthrough
from gateway.proxy.paths import clean_endpoint, unknown_url
from gateway.proxy.relay import as_it_arrives, relay_body, relay_stream
from gateway.proxy.request_ids import new_request_id
from gateway.proxy.streaming import StreamTee
from gateway.proxy.upstream import pass_back_headers
from gateway.proxy.usage_events import events_observer

if TYPE_CHECKING:
    from gateway.proxy.runtime import Runtime

# Endpoints whose streams are OpenAI chunk streams the tee understands.
_TEED_ENDPOINTS = frozenset({"chat/completions", "completions"})
_JSON = "application/json"
# OpenAI endpoints that read only JSON (uploads go to audio, images, files, uploads); the other
# APIs' endpoints (``INBOUND``) too.
_JSON_ONLY = frozenset({"chat/completions", "completions", "embeddings"})

RuntimeGetter = Callable[[], "Runtime"]
RESPONSE_STARTED = web.RequestKey("response_started", bool)  # set when a response's headers go out
_log = logging.getLogger("gateway.proxy")
Finisher = Callable[[RequestContext], None]


def _new_context(request: web.Request, endpoint: str) -> RequestContext:
    # The row's id is always ours, so no client can choose (or collide with) another's; the
    # client's own x-request-id is echoed back and kept as client_request_id.
    headers = request.headers
    return RequestContext(request_id=new_request_id(), endpoint=endpoint, t_start=time.perf_counter(),
                          client_request_id=headers.get("x-request-id", "")[:128],
                          ts_start=time.time(), client_ip=request.remote or "",
                          user_agent=headers.get("User-Agent", ""), headers=headers)


class ProxyHandlers:
    """The aiohttp handlers. ``runtime()`` returns the current compiled config (``Runtime``);
    ``finish(ctx)`` is called once per proxied request after its response ended.

    A request runs its runtime's composed path (``Runtime.request_path``, built by
    ``gateway.app`` from the features' stages): ``read_request`` is one stage of it, ``forward``
    its end; a request made in-process runs ``Runtime.step_path`` (the same without reading)."""

    def __init__(self, runtime: RuntimeGetter, finish: Finisher):
        self._runtime = runtime
        self._finish = finish

    # --- small endpoints -------------------------------------------------------------
    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=_JSON)

    async def list_models(self, request: web.Request) -> web.Response:
        """OpenAI's listing, or Anthropic's page when asked with ``anthropic-version``; only the
        models the caller may see (``VISIBLE_MODELS``)."""
        rt = self._runtime()
        request_id = request.headers.get("x-request-id") or new_request_id()
        visible = request.get(VISIBLE_MODELS)
        inbound = protocol_of(None, request.path, request.headers)  # on these routes: Anthropic's, or None
        if inbound is not None:
            names = [n for n in rt.model_entries if visible is None or visible(n)]
            try:
                page = model_page(names, created_at(rt.models_created), request.query)
            except GatewayError as exc:
                return self._error_response(exc, request_id, inbound=inbound)
            body = orjson.dumps(page)
        elif visible is None:
            body = rt.models_body
        else:
            body = orjson.dumps({"object": "list", "data": [m for n, m in rt.model_entries.items() if visible(n)]})
        return web.Response(body=body, content_type=_JSON, headers={"x-request-id": request_id})

    async def get_model(self, request: web.Request) -> web.Response:
        rt = self._runtime()
        name = request.match_info["model"]
        body = rt.model_bodies.get(name)
        inbound = protocol_of(None, request.path, request.headers)
        if body is None:
            return self._error_response(rt.unknown_model(name),
                                        request.headers.get("x-request-id") or new_request_id(), inbound=inbound)
        if inbound is not None:
            body = orjson.dumps(model_info(name, created_at(rt.models_created)))
        return web.Response(body=body, content_type=_JSON)

    async def not_found(self, request: web.Request) -> web.Response:
        exc = NotFoundError(f"Unknown endpoint: {request.method} {request.path}")
        return self._error_response(exc, request.headers.get("x-request-id") or new_request_id())

    # --- the proxy -------------------------------------------------------------------
    async def proxy(self, request: web.Request) -> web.StreamResponse:
        """``/v1/{endpoint}``: chat/completions, completions, embeddings and pass-through paths."""
        if not clean_endpoint(request.raw_path):  # checked on the bytes as sent, before any decoding
            return self._error_response(unknown_url(request.method, request.raw_path),
                                        request.headers.get("x-request-id") or new_request_id())
        endpoint = request.match_info["endpoint"]
        ctx = _new_context(request, endpoint)
        rt = ctx.runtime = self._runtime()
        ctx.request = request
        ctx.config_hash = rt.snapshot.content_hash
        ctx.inbound = INBOUND.get(endpoint)  # another API than chat (/v1/messages): errors in its shape
        try:
            return await rt.request_path(ctx)
        except GatewayError as exc:
            outcome.failed(ctx, exc)
            # After an attempt failed with no response to pass through (a timeout, a refused
            # connection) the answer still says which backend failed and after how many tries.
            log = ctx.attempt_log
            backend = ctx.backend or (log[-1].backend if log else "")
            return self._error_response(exc, ctx.x_request_id, backend, ctx.response_headers, ctx.attempts,
                                        ctx.inbound)
        except asyncio.CancelledError:  # the client went away (handler_cancellation)
            outcome.client_closed(ctx)
            raise
        except web.HTTPException:
            raise
        except Exception as exc:  # a bug: still a 500 in the caller's protocol, and a row that says so
            _log.exception("request %s failed", ctx.request_id)
            if request.get(RESPONSE_STARTED):  # too late for another answer: the connection is cut
                outcome.failed(ctx, GatewayError(f"{type(exc).__name__} after the answer started"), truncated=True)
                raise
            error = GatewayError(f"The gateway failed handling the request ({type(exc).__name__}); "
                                 f"request id {ctx.request_id}.")
            outcome.failed(ctx, error)
            return self._error_response(error, ctx.x_request_id, ctx.backend, ctx.response_headers, ctx.attempts,
                                        ctx.inbound)
        finally:
            self._settle(ctx)

    def _settle(self, ctx: RequestContext) -> None:
        """The end of a request: conclude its outcome, release the answering target, learn its
        latency, finish."""
        ctx.t_end = time.perf_counter()
        outcome.conclude(ctx)
        state = ctx.target_state
        if state is not None:  # the answering target: release it and learn its latency
            state.inflight -= 1
            if ctx.status_code == 200 and ctx.t_upstream_start is not None and ctx.attempt_log:
                attempt = ctx.attempt_log[-1]
                ttft = None if ctx.t_first_token is None else (ctx.t_first_token - attempt.t_start) * 1000
                state.observe_latency(state.ewma_alpha, (ctx.t_end - attempt.t_start) * 1000, ttft)
                attempt.t_end = ctx.t_end  # the answering attempt lasted until the response ended
                attempt.t_first_byte = attempt.t_first_byte or ctx.t_first_token
        self._finish(ctx)

    async def call_internal(self, ctx: RequestContext) -> web.StreamResponse:
        """Run a request made in-process (a chain step) as if a client had sent it: the stages
        (access, prompts, plugins, cache), routing, the attempt loop, telemetry. ``ctx`` is
        ready as ``read_request`` leaves it (body, model, stream, request, runtime). Returns the
        response: a non-streamed one unsent, a streamed one already relayed to
        ``ctx.request``'s client. A ``GatewayError`` is recorded on ``ctx`` and raised. Either
        way the context is finished (its row emitted) before this returns."""
        try:
            return await ctx.runtime.step_path(ctx)
        except GatewayError as exc:
            outcome.failed(ctx, exc)
            raise
        except asyncio.CancelledError:
            outcome.client_closed(ctx)
            raise
        finally:
            self._settle(ctx)

    def _error_response(self, exc: GatewayError, request_id: str, backend: str = "",
                        extra: dict[str, str] | None = None, attempts: int = 0,
                        inbound: Inbound | None = None) -> web.Response:
        headers = {"x-request-id": request_id, **extra, **exc.headers} if extra else \
            {"x-request-id": request_id, **exc.headers}
        if backend:
            headers["x-gateway-backend"] = backend
        if attempts:
            headers["x-gateway-attempts"] = str(attempts)
        return web.Response(status=exc.status, body=exc.body() if inbound is None else inbound.error_body(exc),
                            content_type=_JSON, headers=headers)

    async def read_request(self, ctx: RequestContext, call_next: Handler) -> web.StreamResponse:
        """The stage that reads and checks the client's request (``ctx.request``), then goes on."""
        rt = ctx.runtime
        request = ctx.request
        check_encoding(request)
        upload = request.method == "POST" and is_form(request.headers.get("Content-Type"))
        if upload and (ctx.inbound is not None or ctx.endpoint in _JSON_ONLY):
            # A form is not a request these APIs read: sent on raw, it would skip translation,
            # validation and the plugins' checks of the body.
            raise InvalidRequestError(NOT_JSON if ctx.inbound is None else
                                      ctx.inbound.not_json("it is a multipart form"))
        limit = rt.upload_limit if upload else rt.body_limit
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLargeError(
                f"Request body of {request.content_length} bytes exceeds the limit of {limit} bytes.")
        if upload or request.method != "POST":
            await read_other(ctx)  # uploads, files, batches… (gateway.proxy.passthrough)
            return await call_next(ctx)
        raw = await read_body(request, limit)
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            ctx.body = RequestBody({}, raw)
            if not raw:  # a POST without a body (/v1/batches/{id}/cancel) names no model either
                model_less(ctx, "")
                return await call_next(ctx)
            # orjson's reason names a position and a kind of fault, never the body's text.
            raise InvalidRequestError(NOT_JSON if ctx.inbound is None else ctx.inbound.not_json(str(exc))) from None
        if not isinstance(parsed, dict):
            ctx.body = RequestBody({}, raw)
            raise InvalidRequestError("The request body must be a JSON object.")
        body = ctx.body = client_body(parsed, raw)
        variant = case_variant_key(body)
        if duplicated_model(raw) or variant is not None and variant.lower() == "model":
            raise InvalidRequestError("The request body names `model` more than once.", param="model",
                                      code="duplicate_key")
        if variant is not None:  # backends that ignore case would read it instead of ours
            raise InvalidRequestError(f"The request body names `{variant[:40]}`: send it as `{variant.lower()}` "
                                      "(field names are lower case).", param=variant[:40], code="duplicate_key")
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            raise InvalidRequestError("`model` must be a string.", param="model")
        if not model:
            model_less(ctx, request.headers.get("Content-Type", ""))  # to passthrough's backend, or refused
            return await call_next(ctx)
        ctx.model_requested = model
        ctx.stream = body.get("stream") is True
        return await call_next(ctx)

    async def forward(self, ctx: RequestContext) -> web.StreamResponse:
        """The terminal stage: route, run the attempt loop, relay the answer."""
        rt = ctx.runtime
        request, inbound = ctx.request, ctx.inbound
        tee: StreamObserver | None
        if ctx.passthrough is not None:  # no JSON body naming a model (gateway.proxy.passthrough)
            result = await send_passthrough(ctx)
            tee = events_observer(ctx) if ctx.stream else None
        else:
            body = ctx.body
            if type(body) is not RequestBody:  # replaced by a stage or plugin: a changed body
                body = ctx.body = RequestBody.of(body)
            endpoint = ctx.endpoint
            model = body["model"]
            stream = ctx.stream
            # Checked here, after the stages: a selected prompt may supply the messages.
            if endpoint == "chat/completions" and not isinstance(body.get("messages"), list):
                raise InvalidRequestError("'messages' must be an array of message objects.", param="messages")
            if rt.count_from is not None:  # routing may count tokens: never load an encoding on the loop
                await rt.load_tokenizer(body)
            plan = rt.router.plan(model, body, stream, request.headers, ctx.metadata, ctx.tenant, ctx.api_key_id,
                                  ctx.prompt_id, lambda: experiment_key(ctx))
            ctx.route_rule = plan.rule
            ctx.strategy = plan.strategy

            teed = stream and endpoint in _TEED_ENDPOINTS
            strip_usage = False
            if teed:
                options = body.get("stream_options")
                ctx.client_wants_usage = isinstance(options, dict) and options.get("include_usage") is True
                if not ctx.client_wants_usage:
                    # Always ask for usage (telemetry needs it); hide it from a client that did not.
                    body["stream_options"] = {**options, "include_usage": True} if isinstance(options, dict) \
                        else {"include_usage": True}
                    body.reencode()
                    strip_usage = True

            ctx.t_upstream_start = time.perf_counter()
            try:
                result = await run_attempts(plan, ctx, body.for_target, rt.forwarded_headers(request.headers),
                                            request.rel_url.raw_query_string, stream, rt.router.rng,
                                            legs=None if inbound is None else inbound.legs(ctx, body),
                                            judged=inbound is not None or endpoint in _JSON_ONLY)
            finally:  # the candidates as the attempts left them (skipped, failed)
                ctx.route_candidates = plan.provenance()
            if inbound is None:  # audio, a file: relayed as it arrives (an event stream without `stream`, too)
                result = as_it_arrives(ctx, result)
            events = stream or result.response.headers.get("Content-Type", "").startswith("text/event-stream")
            tee = StreamTee(ctx, strip_usage) if teed else events_observer(ctx) if events else None
        client = result.candidate.client
        ctx.backend, ctx.provider, ctx.upstream_model = client.name, client.type, result.candidate.upstream_model
        if client.type == "vllm" and ctx.upstream_model in rt.router.adapters:
            ctx.adapter, ctx.adapter_version = ctx.upstream_model, rt.router.adapters[ctx.upstream_model]
        upstream = result.response
        try:
            ctx.t_upstream_headers = time.perf_counter()
            outcome.answered(ctx, upstream.status)
            headers = pass_back_headers(upstream.headers)
            headers["x-request-id"] = ctx.x_request_id
            headers["x-gateway-backend"] = client.name
            headers["x-gateway-attempts"] = str(ctx.attempts)
            if ctx.response_headers:  # set by stages (the access stage's x-ratelimit-*): they win
                extra = ctx.response_headers
                for name in [n for n in headers if n.lower() in extra]:
                    del headers[name]
                headers.update(extra)
            if result.chunks is not None:
                tee = tee if tee is not None or inbound is None else inbound.observer(ctx)
                return await relay_stream(request, ctx, upstream, headers, result, tee)
            return await relay_body(ctx, upstream, headers, result.body, result.parsed)
        except BaseException:
            upstream.close()  # cancelled or failed: drop the upstream connection now
            raise
