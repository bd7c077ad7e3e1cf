"""Requests that are not a JSON body naming a model: uploads, stored objects, model-less POSTs.

- A ``multipart/form-data`` upload (``/v1/audio/transcriptions``, ``/v1/images/edits``,
  ``/v1/files``, ``/v1/uploads/{id}/parts``) is routed by its form's ``model`` like a JSON
  request; its body is streamed through (``gateway.proxy.multipart``), so while the client's
  bytes are still arriving it is sent once, to the first target (no retry, no fallback).
- ``GET``/``DELETE`` (``/v1/files/{id}``, ``/v1/batches/{id}``, ``/v1/responses/{id}``) and a
  POST without a model (``/v1/batches``, ``/v1/moderations``) go to the backend the config's
  ``passthrough:`` names for the path, with its key and its retry policy.
- Anything else that nothing routes is a URL this gateway does not serve: 404 in OpenAI's
  ``Invalid URL`` shape (a POST to an inference endpoint without a model stays 400), unless a
  stage answers it itself (``Runtime.own_paths``: a stored translated response), which then
  answers every such request (backend None).

``read_other`` is ``read_request``'s part for such requests, ``send_passthrough`` the attempt
loop's. The
key's ``endpoints`` globs (the access stage) decide who may reach each path, as for any other,
and the ownership stage (``gateway.ownership``) which stored objects there.
An answer that is not JSON (``response_format=text``, a file's content) is relayed as it
arrives, with its own Content-Type.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass

import orjson
from aiohttp import web

from gateway.config.access import DEFAULT_ENDPOINTS
from gateway.core.context import RequestContext
from gateway.core.errors import InvalidRequestError, NotFoundError, PayloadTooLargeError, UnsupportedEncodingError
from gateway.core.request_body import RequestBody
from gateway.proxy.attempts import AttemptOutcome, run_attempts
from gateway.proxy.multipart import Form, read_form
from gateway.proxy.relay import as_it_arrives

NO_MODEL = "you must provide a model parameter"
UNREADABLE_BODY = ("The request body could not be read: its Content-Encoding or chunked transfer encoding "
                   "is malformed.")


@dataclass(slots=True)
class Passthrough:
    """How to send a request that is not a JSON body naming a model (``ctx.passthrough``):
    its ``method``, the ``backend`` the config names for its path (None: routed by the form's
    model), the ``form`` of an upload, the client's ``content_type``, the ``query`` to send
    (None: the client's)."""

    method: str
    backend: str | None
    form: Form | None = None
    content_type: str = ""
    query: str | None = None  # the query string to send, where a stage changed the client's


# What aiohttp decodes as it reads a body (``br``: the Brotli dependency). Any other value — zstd,
# an unknown name, a list — it would read as identity (or fail on mid-read): refused before reading.
_DECODED = frozenset({"", "identity", "gzip", "deflate", "br"})


def check_encoding(request: web.Request) -> None:
    """Refuse (415) a body whose ``Content-Encoding`` the gateway does not decode."""
    encoding = request.headers.get("Content-Encoding")
    if encoding is not None and encoding.lower() not in _DECODED:
        raise UnsupportedEncodingError(
            f"The request body's Content-Encoding {encoding[:40]!r} is not supported: send it uncompressed, "
            "or with gzip, deflate or br.")


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body of ``request`` (a JSON request's, a PATCH's), up to ``limit`` bytes."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLargeError(f"Request body exceeds the limit of {limit} bytes.") from None
    except web.RequestPayloadError:  # a broken Content-Encoding or chunked framing
        raise InvalidRequestError(UNREADABLE_BODY, code="unreadable_body") from None


def is_form(content_type: str | None) -> bool:
    return content_type is not None and content_type[:19].lower() == "multipart/form-data"


def invalid_url(method: str, endpoint: str) -> NotFoundError:
    """OpenAI's answer for a path it does not serve."""
    return NotFoundError(f"Invalid URL ({method} /v1/{endpoint})", code="unknown_url")


# Inference that OpenAI serves only with a ``model`` (moderations and images pick a default):
# a request there without one is a 400 even where ``passthrough:`` matches, or a server that
# fills in its own model (vLLM does) would serve a key its ``models`` never allowed.
# (A stored response, ``responses/{id}``, is read, deleted or cancelled without one; a new one names it.)
_MODEL_REQUIRED = ("chat/completions", "completions", "embeddings", "responses", "audio/speech",
                   "audio/transcriptions", "audio/translations", "messages",
                   "messages/count_tokens")  # (not audio/voices: no model)


def _needs_model(endpoint: str, routed: bool) -> bool:
    """Whether a request to ``endpoint`` without a model is a 400 (``routed``: ``passthrough:``
    has a backend for it; else every inference endpoint, the keys' default set)."""
    return any(fnmatch.fnmatchcase(endpoint, glob) for glob in (_MODEL_REQUIRED if routed else DEFAULT_ENDPOINTS))


def _answered_here(ctx: RequestContext, method: str) -> bool:
    """Whether a stage answers this request itself (``Runtime.own_paths``)."""
    own = ctx.runtime.own_paths
    return own is not None and own.fullmatch(f"{method} {ctx.endpoint}") is not None


def model_less(ctx: RequestContext, content_type: str) -> None:
    """A POST without a model (its body already on ``ctx``): to the path's ``passthrough:``
    backend, or refused."""
    endpoint = ctx.endpoint
    backend = ctx.runtime.router.passthrough_backend(endpoint)
    if _needs_model(endpoint, backend is not None):
        raise InvalidRequestError(NO_MODEL, param="model")
    if backend is None and not _answered_here(ctx, "POST"):
        raise invalid_url("POST", endpoint)
    ctx.passthrough = Passthrough("POST", backend, None, content_type)


async def read_other(ctx: RequestContext) -> None:
    """``read_request`` for a request without a JSON body: a form upload, or any method but POST."""
    request = ctx.request
    method = request.method
    content_type = request.headers.get("Content-Type", "")
    if method == "POST":  # a form (the only other body read_request leaves to this module)
        # A path ``passthrough:`` routes needs no model: its upload is not read past its first file.
        may_follow = ctx.runtime.router.passthrough_backend(ctx.endpoint) is None
        form = await read_form(request, ctx.runtime.upload_limit, may_follow)
        ctx.body = RequestBody(dict(form.fields), b"")  # the fields stages may read; no bytes are logged
        ctx.stream = form.fields.get("stream") == "true"
        model = form.fields.get("model")
        if model:
            ctx.model_requested = model
            ctx.passthrough = Passthrough(method, None, form, content_type)
            return
        model_less(ctx, content_type)
        ctx.passthrough.form = form
        return
    backend = ctx.runtime.router.passthrough_backend(ctx.endpoint)
    if backend is None and not _answered_here(ctx, method):
        raise invalid_url(method, ctx.endpoint)
    # Any other method's body (a PATCH's) goes on as sent.
    ctx.body = RequestBody({}, await read_body(request, ctx.runtime.body_limit) if request.body_exists else b"")
    ctx.passthrough = Passthrough(method, backend, None, content_type)


async def send_passthrough(ctx: RequestContext) -> AttemptOutcome:
    """Route and send a ``read_other``/``model_less`` request; the answer as the attempt loop
    leaves it (a non-JSON success is then relayed as it arrives)."""
    rt, request, how = ctx.runtime, ctx.request, ctx.passthrough
    assert how is not None  # set by read_other / model_less
    router = rt.router
    plan = router.passthrough_plan(how.backend) if how.backend is not None else \
        router.plan(ctx.model_requested, ctx.body, ctx.stream, request.headers, ctx.metadata, ctx.tenant,
                    ctx.api_key_id, ctx.prompt_id)
    ctx.route_rule, ctx.strategy = plan.rule, plan.strategy
    headers = dict(rt.forwarded_headers(request.headers) or {})
    form = how.form
    if form is not None:
        headers["Content-Type"] = how.content_type
        length = request.content_length
        if not form.whole:  # the client's bytes are still arriving: they can be sent once
            del plan.ordered[1:]
            plan.retry = plan.retry.model_copy(update={"attempts": 1})

        def body_for(cand):
            body, delta = form.body(cand.upstream_model)
            if length is not None:
                headers["Content-Length"] = str(length + delta)
            return body, None
    else:
        body = ctx.body
        raw = (body.raw or None) if how.method != "POST" and isinstance(body, RequestBody) else \
            body.raw if isinstance(body, RequestBody) and not body.changed else orjson.dumps(body)
        if raw is not None:
            headers["Content-Type"] = how.content_type or "application/json"

        def body_for(cand):
            return raw, None
    ctx.t_upstream_start = time.perf_counter()
    try:
        query = request.rel_url.raw_query_string if how.query is None else how.query
        result = await run_attempts(plan, ctx, body_for, headers or None, query,
                                    ctx.stream, router.rng, method=how.method)
    finally:
        ctx.route_candidates = plan.provenance()
    return as_it_arrives(ctx, result)


__all__ = ["NO_MODEL", "UNREADABLE_BODY", "Passthrough", "check_encoding", "invalid_url", "is_form", "model_less",
           "read_body", "read_other", "send_passthrough"]
