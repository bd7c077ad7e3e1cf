"""HTTP endpoints of the prompt registry.

- ``POST /v1/feedback`` ``{"request_id", "score", "label"?, "comment"?, "rater"?}``: a score for one
  answered request (the ``x-request-id`` it was answered: the gateway's id, or the client's own
  id when it sent one), stored in ``llm_feedback`` under the row's ``request_id`` with the
  caller's key id and tenant; compare versions with the saved query ``prompt-versions``.
  ``rater`` names who gave the score (a person, an evaluator model), so ``llm-gateway bias
  --raters`` can compare raters.
  Answers ``{"object": "feedback", "id", "request_id"}``; 400 for a malformed body, 404
  ``request_not_found`` unless the request exists and belongs to the caller's tenant
  (``gateway.telemetry.recent``; the admin key may score any request), 503 when telemetry is
  off (nowhere to store it) or the look-up cannot run. In ``auth.mode: keys`` the access
  middleware admits only a valid virtual key or the admin key (401 otherwise); the row records
  the key's tenant and id, the same ``api_key_id`` its request rows carry (``admin`` for the
  admin key). Without auth the key id is a fingerprint of the bearer key, as in request rows.
- ``GET /admin/prompts``: every prompt with its versions (hash, first seen, variables,
  params, templates), labels, the models that name a prompt, and the request log's
  counters. Behind the one admin check every ``/admin`` path gets (``gateway.access.feature``).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import orjson
from aiohttp import web

from gateway.access.auth import authenticated_key, bears_admin_key
from gateway.core.errors import error_body
from gateway.prompts.tables import feedback_row
from gateway.telemetry import QUERY_LANES, RECENT
from gateway.telemetry.lanes import QueryBusy
from gateway.telemetry.recent import find_request
from gateway.telemetry.scrub import key_fingerprint, scrub_secrets

log = logging.getLogger("gateway.prompts")
_JSON = "application/json"
_FEEDBACK_KEYS = frozenset({"request_id", "score", "label", "comment", "rater"})
COMMENT_MAX = 8192
LABEL_MAX = 128
RATER_MAX = 128


def _error(status: int, message: str, code: str | None, param: str | None = None,
           type_: str = "invalid_request_error") -> web.Response:
    return web.Response(status=status, body=error_body(message, type_, param, code), content_type=_JSON)


class Feedback(NamedTuple):
    """A parsed feedback body."""

    request_id: str
    score: float
    label: str
    comment: str
    rater: str


def parse_feedback(data: bytes) -> Feedback:
    """The feedback in a body; ``ValueError((message, param))``."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ValueError(("the body must be JSON: {\"request_id\": ..., \"score\": ...}", None)) from None
    if not isinstance(body, dict):
        raise ValueError(("the body must be a JSON object", None))
    unknown = sorted(set(body) - _FEEDBACK_KEYS)
    if unknown:
        raise ValueError((f"unknown field {unknown[0]!r} (allowed: request_id, score, label, comment, rater)",
                          unknown[0]))
    rid = body.get("request_id")
    if not isinstance(rid, str) or not rid.strip() or len(rid) > 128:
        raise ValueError(("request_id must be the x-request-id of a request (a string of 1-128 characters)",
                          "request_id"))
    score = body.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        raise ValueError(("score must be a finite number", "score"))
    label = body.get("label") or ""
    if not isinstance(label, str) or len(label) > LABEL_MAX:
        raise ValueError((f"label must be a string of at most {LABEL_MAX} characters", "label"))
    comment = body.get("comment") or ""
    if not isinstance(comment, str) or len(comment) > COMMENT_MAX:
        raise ValueError((f"comment must be a string of at most {COMMENT_MAX} characters", "comment"))
    rater = body.get("rater")
    if rater is None:
        rater = ""
    # printable text only: it is a grouping key shown in tables, not free text
    if not isinstance(rater, str) or len(rater.strip()) > RATER_MAX or not rater.isprintable():
        raise ValueError((f"rater must be a printable string of at most {RATER_MAX} characters", "rater"))
    return Feedback(rid.strip(), float(score), label, comment, rater.strip())


class PromptEndpoints:
    """The handlers. ``runtime()``: the current ``Runtime``; ``sink()``: the request log (``RequestLog``) or
    ``None`` (telemetry off); ``admin_key``: the configured admin key or ``None`` (used only on
    an application without the access layer)."""

    def __init__(self, runtime: Callable[[], Any], sink: Callable[[], Any], admin_key: str | None):
        self._runtime = runtime
        self._sink = sink
        self._admin_key = admin_key

    def routes(self, routes) -> None:
        """Register the routes (``gateway.core.feature.Routes``)."""
        routes.post("/v1/feedback", self.feedback)
        routes.admin_get("/admin/prompts", self.admin_prompts)

    async def feedback(self, request: web.Request) -> web.Response:
        sink = self._sink()
        try:
            fb = parse_feedback(await request.read())
        except web.RequestPayloadError:  # a broken Content-Encoding or chunked framing
            return _error(400, "the request body could not be read (malformed encoding)", "invalid_feedback")
        except ValueError as exc:
            message, param = exc.args[0]
            return _error(400, message, "invalid_feedback", param)
        if sink is None:
            return _error(503, "feedback needs telemetry (telemetry.enabled is off)", "telemetry_disabled",
                          type_="server_error")
        key = authenticated_key(request)  # the virtual key in auth.mode keys, else None
        if bears_admin_key(request, self._admin_key):
            owner, tenant, key_id = None, "", "admin"
        elif key is not None:
            owner, tenant, key_id = key.tenant, key.tenant, key.key_id
        else:  # no auth: every request is tenant ""
            owner, tenant, key_id = "", "", key_fingerprint(request.headers)
        try:
            found = await find_request(request.app.get(RECENT), request.app.get(QUERY_LANES), fb.request_id, owner)
        except QueryBusy as exc:
            return _error(503, str(exc), "busy", type_="server_error")
        except Exception as exc:  # the store is down: cannot tell whose request it is
            log.info("feedback look-up failed: %s", (scrub_secrets(str(exc)) or type(exc).__name__)[:300])
            return _error(503, "the telemetry store cannot be read to check the request; try again later",
                          "store_unavailable", type_="server_error")
        if found is None:
            return _error(404, f"no request {fb.request_id!r} of yours was found (give the x-request-id it was "
                          "answered)", "request_not_found", "request_id")
        request_uuid, client_rid = found
        fid = str(uuid.uuid4())
        sink.emit_row(*feedback_row(fid, time.time(), request_uuid, client_rid, fb.score, fb.label, fb.comment, tenant,
                                    key_id, fb.rater))
        return web.json_response({"object": "feedback", "id": fid, "request_id": fb.request_id, "score": fb.score})

    async def admin_prompts(self, request: web.Request) -> web.Response:
        runtime = self._runtime()
        if runtime is None:
            return _error(503, "the gateway is starting", "starting", type_="server_error")
        from gateway.prompts.describe import describe_registry

        snapshot = runtime.snapshot
        out = describe_registry(runtime.compiled.get("prompts"), snapshot.config)
        out["config_hash"] = snapshot.content_hash
        sink = self._sink()
        out["telemetry"] = sink.stats() if sink is not None else None
        return web.Response(body=orjson.dumps(out, option=orjson.OPT_NON_STR_KEYS), content_type=_JSON)
