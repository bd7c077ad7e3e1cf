"""The ownership stage: a tenant reaches only the stored objects its own keys created.

Runs right after the access stage (the caller's tenant is known), for a config with keys and
``auth.stored_objects: owned``. Per request in a collection of ``gateway.ownership.objects``:

- a path naming an object (``GET /v1/files/{id}/content``, ``POST /v1/batches/{id}/cancel``) and
  the objects a JSON body names (``input_file_id``, ``training_file``, ``file_ids``, …, and the
  nested shapes of ``gateway.ownership.nested``) must be
  the caller's tenant's in the ledger, else 404 as if they did not exist (nothing is sent on);
- a successful POST records the objects its answer describes for the caller's tenant (a chat
  completion only with ``store: true``, a response unless ``store: false``); a successful
  ``DELETE`` of an object forgets it; an answer about the caller's batch or fine-tuning job
  (retrieved, listed) records the result files it names; an id another tenant already holds
  stays that tenant's;
- a list (``GET /v1/files``) keeps only the caller's objects. To fill the page, a ``limit``
  under 100 is asked of the backend as 100 and the kept items cut to the client's ``limit``
  (``has_more`` then true); ``first_id``/``last_id`` name kept items only. A page can still
  come back short, even empty with ``has_more`` true, when the backend's next 100 are others'.

The admin key (``KeyPolicy.admin``) reaches every object and records nothing; the owner of
the object its path names is looked up for it (``ctx.object_owner``: a translated response is
kept per tenant). An object the
ledger does not know (created before, or outside the gateway) is the admin key's only, until
``POST /admin/objects`` adopts it for a tenant.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiohttp import web

from gateway.core.context import RequestContext
from gateway.core.errors import InvalidRequestError, NotFoundError, ServiceUnavailableError, UpstreamError
from gateway.inbound.responses.turn import previous_response_not_found
from gateway.ownership.ledger import Ledger
from gateway.ownership.nested import nested_ids
from gateway.ownership.objects import (
    collection_of,
    created_ids,
    item_id,
    listing,
    may_name_produced,
    named_id,
    path_ids,
    produced_ids,
    referenced_ids,
)
from gateway.ownership.results_url import MARKER, origin, point_at_gateway

log = logging.getLogger("gateway.ownership")
WIDE_PAGE = 100  # the most every OpenAI list accepts as ``limit`` (batches, vector stores: 100)
STORED_ANSWER_TTL_S = 30 * 86400.0  # OpenAI keeps a stored response 30 days
# How long a request naming an unknown id waits for its tenant's streams still being recorded
# (see ``_settled``) before the id counts as unknown.
RECORDING_WAIT_S = 2.0
_CURSORS = ("after", "before", "after_id", "before_id")  # OpenAI's, Anthropic's
_DROPPED_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding"})


class OwnershipStage:
    """The stage (``__call__``) over the ledger ``gateway.ownership.feature`` keeps in ``ledger``."""

    def __init__(self) -> None:
        self.ledger: Ledger | None = None
        self._writes: set[asyncio.Task] = set()
        # Per tenant, its creating streams not yet recorded: a stream's id is recorded once it
        # has ended, after the client may already have read it from the final event.
        self._recording: dict[str, int] = {}

    async def _owners(self, ids: list[str]) -> dict[str, str]:
        assert self.ledger is not None  # set before the stage is in any request's path
        try:
            return await self.ledger.owners(ids)
        except Exception as exc:
            log.warning("ownership ledger read failed (%s)", type(exc).__name__)
            raise ServiceUnavailableError("The gateway could not check who owns the objects this request names; "
                                          "try again.") from None

    async def __call__(self, ctx: RequestContext, call_next) -> web.StreamResponse:
        grant = ctx.access
        endpoint = ctx.endpoint
        collection = collection_of(endpoint)
        body = ctx.body
        refs = referenced_ids(body) + nested_ids(body)
        if grant is None or (collection is None and not refs):
            return await call_next(ctx)
        if grant.key.admin:
            return await self._admin(ctx, call_next, collection)
        tenant = ctx.tenant
        method = ctx.request.method
        object_id = named_id(endpoint, collection) if collection is not None else None
        wanted = [("id", i) for i in path_ids(endpoint, collection)] + refs if collection is not None else refs
        listed = collection is not None and method == "GET" and len(endpoint) == len(collection)
        if listed:  # a page cursor names an object too: another's would tell that it exists
            query = ctx.request.rel_url.query
            wanted += [(c, v) for c in _CURSORS if (v := query.get(c))]
        if wanted:
            owners = await self._settled(tenant, [i for _, i in wanted])
            for field, i in wanted:
                if owners.get(i) != tenant:  # another's, or unknown: as if it did not exist
                    raise previous_response_not_found(i) if field == "previous_response_id" else \
                        NotFoundError(f"No such object: {i}", param=field)
        if collection is None:
            return await call_next(ctx)
        if listed:  # the list itself
            limit = self._widen(ctx)
            return await self._filtered(ctx, await call_next(ctx), tenant, limit)
        created = method == "POST" and _stored(collection, body)
        if created:
            self._recording[tenant] = self._recording.get(tenant, 0) + 1
        claim: asyncio.Task | None = None
        try:
            response = _results_at_gateway(ctx, await call_next(ctx), collection)
            if not 200 <= response.status < 300:
                return response
            if method == "DELETE" and object_id is not None and \
                    len(endpoint) == len(collection) + 1 + len(object_id):
                await self._write(self.ledger.forget(object_id) if self.ledger else None, object_id)
            else:
                ids = _answer_ids(response, created)
                if created and ids is None:  # a stream: its id as it ended
                    ids = [ctx.response_id] if ctx.response_id else []
                if ids:
                    claim = await self._claim(response, ids, tenant, _ttl(ctx, collection) if created else None)
            return response
        finally:
            if created:
                if claim is None or claim.done():
                    self._recorded(tenant)
                else:
                    claim.add_done_callback(lambda _task: self._recorded(tenant))

    def _recorded(self, tenant: str) -> None:
        left = self._recording[tenant] - 1
        if left:
            self._recording[tenant] = left
        else:
            del self._recording[tenant]

    async def _settled(self, tenant: str, ids: list[str]) -> dict[str, str]:
        """The owners of ``ids``; while one is unknown and ``tenant`` has a creating stream not
        yet recorded, asked again as those are recorded (up to ``RECORDING_WAIT_S``): a client
        that reads a streamed response's id from its last event and asks for it at once is not
        told it does not exist."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECORDING_WAIT_S
        while True:
            # Sampled before the read: a record that ends after this sample is still waited for.
            recording = self._recording.get(tenant)
            owners = await self._owners(ids)
            if not recording or all(i in owners for i in ids) or loop.time() >= deadline:
                return owners
            await asyncio.sleep(0.02)

    async def _claim(self, response: web.StreamResponse, ids: list[str], tenant: str,
                     ttl: float | None) -> asyncio.Task | None:
        """Record ``ids`` for ``tenant`` (in a task of its own, returned: a client that goes away
        must not leave its object unrecorded), before ``response`` is sent where it has not been
        yet (a stream's: as it ends; ``_settled`` covers the moment after)."""
        if self.ledger is None:
            return None
        task = asyncio.get_running_loop().create_task(self._write(self._record_new(ids, tenant, ttl), ids[0]))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        if not response.prepared:
            await asyncio.shield(task)
        return task

    async def _record_new(self, ids: list[str], tenant: str, ttl: float | None) -> None:
        """Record the ids the ledger does not know yet: an id already another tenant's stays its
        first owner's (a backend that reuses ids must not hand one tenant's object to another)."""
        assert self.ledger is not None
        owners = await self.ledger.owners(ids)
        for object_id, owner in owners.items():
            if owner != tenant:
                log.warning("ownership: %s is already another tenant's; it stays theirs", object_id)
        fresh = [i for i in ids if i not in owners]
        if fresh:
            await self.ledger.record(fresh, tenant, ttl)

    async def _admin(self, ctx: RequestContext, call_next, collection: str | None) -> web.StreamResponse:
        """The admin key reaches every object; the owner of the one its path names is looked up
        (``ctx.object_owner``) for what the gateway keeps per tenant, and forgotten if deleted."""
        object_id = named_id(ctx.endpoint, collection) if collection is not None else None
        if object_id is None or self.ledger is None:
            return _results_at_gateway(ctx, await call_next(ctx), collection)
        try:  # the owner is a convenience here: a ledger that cannot be read refuses nothing
            ctx.object_owner = (await self._owners([object_id])).get(object_id, "")
        except ServiceUnavailableError:
            ctx.object_owner = ""
        response = _results_at_gateway(ctx, await call_next(ctx), collection)
        assert collection is not None
        if ctx.request.method == "DELETE" and 200 <= response.status < 300 and ctx.object_owner and \
                len(ctx.endpoint) == len(collection) + 1 + len(object_id):
            await self._write(self.ledger.forget(object_id), object_id)
        return response

    async def drain(self) -> None:
        """Wait for the writes still under way (at shutdown)."""
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    @staticmethod
    async def _write(op, object_id: str) -> None:
        """A ledger write: a failure is logged (the object is then the admin key's only), the
        answer still goes out (the backend did what was asked)."""
        if op is None:
            return
        try:
            await op
        except Exception as exc:
            log.warning("ownership ledger write for %s failed (%s)", object_id, type(exc).__name__)

    @staticmethod
    def _widen(ctx: RequestContext) -> int | None:
        """The client's ``limit`` when it is under ``WIDE_PAGE`` (the backend is then asked for
        ``WIDE_PAGE``), else None."""
        raw = ctx.request.rel_url.query.get("limit", "")
        if raw.isdigit() and int(raw) < 1:  # OpenAI's answer; a backend asked for 100 would not give it
            raise InvalidRequestError(f"Invalid 'limit': integer below minimum value. Expected a value >= 1, "
                                      f"but got {raw} instead.", param="limit", code="integer_below_min_value")
        how = ctx.passthrough
        if not raw.isdigit() or not 0 < int(raw) < WIDE_PAGE or how is None:
            return None
        how.query = ctx.request.rel_url.update_query(limit=str(WIDE_PAGE)).raw_query_string
        return int(raw)

    async def _filtered(self, ctx: RequestContext, response: web.StreamResponse, tenant: str,
                        limit: int | None) -> web.StreamResponse:
        """``response`` (a list) with only ``tenant``'s objects."""
        if not 200 <= response.status < 300:
            return response
        raw = response.body if isinstance(response, web.Response) and isinstance(response.body, bytes) else b""
        parsed = listing(raw) if raw else None
        if parsed is None:  # never relay what cannot be filtered
            raise UpstreamError("The backend's list could not be read, so it was not relayed.")
        data: list[Any] = parsed["data"]
        ids = [item_id(x) for x in data]
        owners = await self._owners([i for i in ids if i])
        kept = [x for x, i in zip(data, ids) if i and owners.get(i) == tenant]
        more = bool(parsed.get("has_more"))
        if limit is not None and len(kept) > limit:
            kept, more = kept[:limit], True
        parsed["data"] = kept
        for field, at in (("first_id", 0), ("last_id", -1)):
            if field in parsed:
                parsed[field] = item_id(kept[at]) if kept else None
        if "has_more" in parsed:
            parsed["has_more"] = more
        if may_name_produced(raw):  # the result files of the caller's finished batches
            made = [i for x in kept for i in produced_ids(x)]
            if made:
                await self._claim(response, made, tenant, None)
        if ctx.endpoint.lower() == "messages/batches":
            point_at_gateway(parsed, origin(ctx.request))
        out = orjson.dumps(parsed)
        ctx.response_body = out  # the row keeps what the caller saw
        headers = {k: v for k, v in response.headers.items() if k.lower() not in _DROPPED_HEADERS}
        return web.Response(status=response.status, body=out, headers=headers)


def _results_at_gateway(ctx: RequestContext, response: web.StreamResponse,
                        collection: str | None) -> web.StreamResponse:
    """``response`` with the ``results_url`` of the Anthropic message batches it describes
    pointing at the gateway (``gateway.ownership.results_url``)."""
    if collection != "messages/batches" or not isinstance(response, web.Response) or \
            not isinstance(response.body, bytes) or MARKER not in response.body:
        return response
    try:
        parsed = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        return response
    if not point_at_gateway(parsed, origin(ctx.request)):
        return response
    out = ctx.response_body = orjson.dumps(parsed)
    headers = {k: v for k, v in response.headers.items() if k.lower() not in _DROPPED_HEADERS}
    return web.Response(status=response.status, body=out, headers=headers)


def _answer_ids(response: web.StreamResponse, created: bool) -> list[str] | None:
    """The ids a successful answer about the caller's object gives the caller: the object it
    created (``created``), and the result files a batch or fine-tuning job names. None for a
    streamed answer (not read here)."""
    if not isinstance(response, web.Response) or not isinstance(response.body, bytes):
        return None
    body = response.body
    ids = created_ids(body) if created else []
    if may_name_produced(body):
        try:
            ids += produced_ids(orjson.loads(body))
        except orjson.JSONDecodeError:
            pass
    return ids


def _ttl(ctx: RequestContext, collection: str) -> float | None:
    """How long an object is remembered, where less than the ledger's TTL: a response the
    gateway translated as long as it keeps the conversation (``responses.ttl_s``); a native
    response or a stored completion ``STORED_ANSWER_TTL_S``."""
    if collection not in ("responses", "chat/completions"):
        return None
    turn = ctx.conversation
    if collection == "responses" and turn is not None and getattr(turn, "response", None) is not None:
        return ctx.runtime.snapshot.config.responses.ttl_s
    return STORED_ANSWER_TTL_S


def _stored(collection: str, body: Any) -> bool:
    """Whether a successful POST to ``collection`` stored an object at the backend: a chat
    completion only with ``store: true``; a response unless ``store: false`` (OpenAI's default)."""
    store = body.get("store") if isinstance(body, dict) else None
    if collection == "chat/completions":
        return store is True
    return not (collection == "responses" and store is False)


__all__ = ["STORED_ANSWER_TTL_S", "WIDE_PAGE", "OwnershipStage"]
