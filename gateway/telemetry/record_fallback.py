"""Stand-in rows: when a request's full row cannot be built (a bug), or the store refuses the
row that was built (a value it cannot parse), the request still gets a row — its id, time,
route and status, every other column empty — flagged in ``row_flags`` (``fallback`` /
``rejected``) so the loss is visible and countable."""

from __future__ import annotations

import calendar
import time
import uuid
from typing import Any

from gateway.telemetry.columns import REQUEST_COLUMN_NAMES, REQUEST_COLUMNS
from gateway.telemetry.scrub import scrub_secrets
from gateway.telemetry.values import format_ts, to_uuid

_DEFAULTS = {"Bool": False, "UInt8": 0, "UInt16": 0, "UInt32": 0, "Float64": 0.0}
_KEPT = ("endpoint", "model_requested", "backend", "tenant")
_FLAGS = REQUEST_COLUMN_NAMES.index("row_flags")


def fallback_row(ctx: Any, exc: BaseException, *, config_hash: str, instance: str) -> list[Any]:
    """The stand-in row of ``ctx`` (a context, or its facts) whose row could not be built."""
    return _minimal(ctx, config_hash, instance, "telemetry_row_error",
                    f"row could not be built: {type(exc).__name__}", "fallback")


def rejected_row(row: list[Any], error: BaseException | str, *, config_hash: str, instance: str) -> list[Any]:
    """The stand-in for ``row`` (``llm_requests`` values), which the store refused: its identity,
    route and status where they are well-formed, and the store's reason (first line, scrubbed)."""
    values = dict(zip(REQUEST_COLUMN_NAMES, row))
    view = _RowView(values)
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    reason = scrub_secrets(reason.strip().splitlines()[0] if reason.strip() else "")[:300]
    out = _minimal(view, config_hash, instance, "telemetry_row_rejected",
                   f"the store rejected the row: {reason}", "rejected")
    return out


class _RowView:
    """A refused row's values as the attributes ``_minimal`` reads (each only if well-formed)."""

    def __init__(self, values: dict[str, Any]):
        rid = values.get("request_id")
        self.request_id = rid if isinstance(rid, str) else ""
        client = values.get("client_request_id")
        self.client_request_id = client if isinstance(client, str) else ""
        self.ts_start = _epoch(values.get("ts_start"))
        for name in (*_KEPT, "status_code"):
            setattr(self, name, values.get(name))


def _epoch(text: Any) -> float:
    """``'YYYY-MM-DD hh:mm:ss.fff'`` (UTC) → Unix seconds; 0.0 (now) when it is not that."""
    if not isinstance(text, str):
        return 0.0
    try:
        whole, _, frac = text.partition(".")
        return calendar.timegm(time.strptime(whole, "%Y-%m-%d %H:%M:%S")) + (int(frac[:3] or 0) / 1000)
    except ValueError:
        return 0.0


def _minimal(ctx: Any, config_hash: str, instance: str, error_type: str, message: str, flag: str) -> list[Any]:
    rid, client_rid = to_uuid(str(getattr(ctx, "request_id", "") or uuid.uuid4()))
    client_rid = str(getattr(ctx, "client_request_id", "") or client_rid)
    ts = float(getattr(ctx, "ts_start", 0.0) or time.time())
    row: list[Any] = [None] * len(REQUEST_COLUMNS)
    for i, (_name, ctype) in enumerate(REQUEST_COLUMNS):
        base = ctype.split(" CODEC")[0]
        if base.startswith("Nullable"):
            row[i] = None
        elif base.startswith("Map"):
            row[i] = {}
        elif base.startswith("Array"):
            row[i] = []
        elif base.startswith("DateTime64"):
            row[i] = format_ts(ts)
        else:
            row[i] = rid if base == "UUID" else _DEFAULTS.get(base, "")
    names = REQUEST_COLUMN_NAMES
    row[names.index("client_request_id")] = client_rid
    row[names.index("config_hash")] = config_hash
    row[names.index("instance")] = instance
    for field in _KEPT:
        value = getattr(ctx, field, "")
        row[names.index(field)] = value if isinstance(value, str) else ""
    status = getattr(ctx, "status_code", 0)
    row[names.index("status_code")] = status if isinstance(status, int) and 0 <= status < 65536 else 0
    row[names.index("error_type")] = error_type
    row[names.index("error_message")] = message
    row[_FLAGS] = [flag]
    return row
