"""The reference for facts-record tests: a live ``RequestContext`` read as ``RequestFacts``
without any record in between, so rows built from it are what rows built from the record
must equal."""

from __future__ import annotations

from typing import Any

from gateway.core.outcome import model_worked
from gateway.core.request_body import client_body, logged_bytes
from gateway.telemetry.columns import ATTEMPT_COLUMN_NAMES, REQUEST_COLUMN_NAMES
from gateway.telemetry.facts import RequestFacts, decode, encode_request
from gateway.telemetry.record import RowBuilder
from gateway.telemetry.scrub import key_fingerprint

_COMPUTED = {"billable", "flags", "body_size", "body", "api_key_id", "chain_steps"}


class ContextView(RequestFacts):
    """``ctx``'s own attributes (every header, the whole body, every text chunk) as facts."""

    def __init__(self, ctx: Any):
        for name in RequestFacts.__annotations__:
            if name not in _COMPUTED:
                setattr(self, name, getattr(ctx, name))
        self.billable = model_worked(ctx)
        self.flags = []
        self.body_size = None
        self.body = None if ctx.body is None else client_body(dict(ctx.body), logged_bytes(ctx.body))
        self.api_key_id = ctx.api_key_id or key_fingerprint(ctx.headers)
        self.chain_steps = [ContextView(s) for s in ctx.chain_steps] if ctx.chain_steps else None


def rows_of(builder: RowBuilder, facts: RequestFacts) -> tuple[list[Any], list[list[Any]]]:
    """``(request row, attempt rows)`` of ``facts``."""
    row = builder.request_row(facts)
    return row, builder.attempt_rows(facts, row[0])


def assert_same_rows(builder: RowBuilder, ctx: Any, payload: bytes | None = None, *, keep_text: bool = True) -> None:
    """The rows of ``ctx`` read directly equal those of its record (``payload``, else encoded now)."""
    record = decode(payload if payload is not None else encode_request(ctx, keep_text=keep_text))
    assert isinstance(record, RequestFacts)
    direct, via_record = rows_of(builder, ContextView(ctx)), rows_of(builder, record)
    want, got = dict(zip(REQUEST_COLUMN_NAMES, direct[0])), dict(zip(REQUEST_COLUMN_NAMES, via_record[0]))
    assert got == want, {k: (want[k], got[k]) for k in want if want[k] != got[k]}
    assert [dict(zip(ATTEMPT_COLUMN_NAMES, r)) for r in via_record[1]] == \
        [dict(zip(ATTEMPT_COLUMN_NAMES, r)) for r in direct[1]]
