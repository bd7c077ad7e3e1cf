"""Which request belongs to whom: the check behind ``POST /v1/feedback``.

A score may only name a request that exists and belongs to the caller's tenant (the admin key
may score any). Rows reach ClickHouse asynchronously (through the request log and the ingester,
which waits while the store is down), so a request answered a moment ago may not be there yet. Every
finished request is therefore also recorded here, in memory: its id → (tenant, the client's own
``x-request-id``), the last ``max_entries`` of them. ``find_request`` looks there first and
falls back to ClickHouse (the ``lookups`` query lane) for older requests or ones another
process answered.

The id a caller gives is the ``x-request-id`` it was answered: the gateway's own UUID, or the
client's own id when it sent one (resolved within the caller's tenant: the latest such
request).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import orjson

from gateway.telemetry.lanes import LOOKUPS

DEFAULT_MAX_ENTRIES = 100_000
_NOT_YOURS = object()

_LOOKUP_SQL = """
SELECT id, cid FROM (
    SELECT toString(request_id) AS id, client_request_id AS cid, 0 AS by_client, ts_start
    FROM llm_requests WHERE request_id = toUUIDOrZero({{rid:String}}){tenant}
    UNION ALL
    SELECT toString(request_id) AS id, client_request_id AS cid, 1 AS by_client, ts_start
    FROM llm_requests WHERE client_request_id = {{rid:String}}{tenant}
) ORDER BY by_client, ts_start DESC LIMIT 1"""


class RecentRequests:
    """The last ``max_entries`` finished requests: ``record(ctx)`` is a finisher (event loop
    thread, like the look-ups), ``find(given, tenant)`` answers from memory."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES):
        self.max_entries = max_entries
        self._by_id: OrderedDict[str, tuple[str, str]] = OrderedDict()  # request id → (tenant, client id)
        self._by_client: dict[tuple[str, str], str] = {}  # (tenant, client id) → latest request id

    def __len__(self) -> int:
        return len(self._by_id)

    def record(self, ctx: Any) -> None:
        rid, tenant, cid = ctx.request_id, ctx.tenant, ctx.client_request_id
        by_id = self._by_id
        by_id[rid] = (tenant, cid)
        if cid:
            self._by_client[(tenant, cid)] = rid
        if len(by_id) > self.max_entries:
            old, (t, c) = by_id.popitem(last=False)
            if c and self._by_client.get((t, c)) == old:
                del self._by_client[(t, c)]

    def find(self, given: str, tenant: str | None) -> tuple[str, str] | None | object:
        """``(request_id, client_request_id)`` of the request ``given`` names for ``tenant``
        (``None``: any tenant); ``None`` when it is not known here; ``NOT_YOURS`` when it is a
        request of another tenant (request ids are unique: no need to look further)."""
        hit = self._by_id.get(given)
        if hit is not None and (tenant is None or hit[0] == tenant):
            return given, hit[1]
        if tenant is not None:
            rid = self._by_client.get((tenant, given))
            if rid is not None:
                return rid, given
        else:  # the admin key, by a client's id: the latest request of any tenant with it
            for rid, (_, cid) in reversed(self._by_id.items()):
                if cid == given:
                    return rid, cid
        return _NOT_YOURS if hit is not None else None


NOT_YOURS = _NOT_YOURS


async def find_request(recent: RecentRequests | None, lanes: Any, given: str,
                       tenant: str | None) -> tuple[str, str] | None:
    """``(request_id, client_request_id)`` of the request ``given`` names, if it exists and
    belongs to ``tenant`` (``None``: any); else ``None``. Raises ``QueryBusy`` or the store's
    error when the fallback look-up cannot run."""
    found = recent.find(given, tenant) if recent is not None else None
    if found is NOT_YOURS:
        return None
    if isinstance(found, tuple):
        return found
    if lanes is None:
        return None
    sql = _LOOKUP_SQL.format(tenant=" AND tenant = {tenant:String}" if tenant is not None else "")
    params = {"rid": given} if tenant is None else {"rid": given, "tenant": tenant}
    data = await lanes.query(LOOKUPS, sql, "JSONEachRow", params)
    line = data.strip()
    if not line:
        return None
    row = orjson.loads(line.splitlines()[0])
    return row["id"], row["cid"]
