"""The facts record: one finished request (or one row of another table) as the serving process
writes it to the durable log, and as the ingester reads it back to build rows.

``encode_request(ctx, keep_text=...)`` and ``encode_table_row(table, columns, row)`` (from
``facts_encode``, the serving process's half) turn a request or a row into bytes;
``decode(payload)`` gives back a ``RequestFacts`` (what ``RowBuilder`` reads: the attributes of
a ``RequestContext`` that rows are made of) or a ``TableRow``. ``as_facts(ctx)`` does both for
a context in hand (the in-process sink, tests).

A record names what was repaired on the way in ``flags`` (``sanitized:<field>``,
``truncated:<field>``); the row stores them in ``row_flags``.
"""

from __future__ import annotations

import struct
from array import array
from typing import Any, NamedTuple

import orjson

from gateway.core.context import Attempt, RequestContext, Usage
from gateway.core.request_body import RequestBody, client_body
from gateway.telemetry.facts_encode import (
    ATTEMPT_FIELDS,
    NO_RESPONSE,
    REQUEST,
    REQUEST_HEADER,
    STEP_LENGTH,
    TABLE_HEADER,
    TABLE_ROW,
    USAGE_FIELDS,
    VERSION,
    encode_request,
    encode_table_row,
)

__all__ = ["RequestFacts", "TableRow", "as_facts", "decode", "encode_request", "encode_table_row"]



class TableRow(NamedTuple):
    """One row of ``table`` (``prompt_versions``, ``llm_feedback``): ``row`` in ``columns`` order."""

    table: str
    columns: tuple[str, ...]
    row: list[Any]


class RequestFacts:
    """A finished request as its record tells it: the ``RequestContext`` attributes rows are built
    from (same names, same meaning), plus ``billable`` (``outcome.model_worked`` at request end),
    ``flags`` (what the encoder repaired) and ``body_size`` (the full size of a request body
    kept only in part; else ``None``).

    ``body`` is a ``RequestBody`` whose ``raw`` is the logged request (the client's bytes, or
    what a stage made of them); ``headers`` holds only the headers rows read.
    """

    request_id: str
    client_request_id: str
    endpoint: str
    t_start: float
    ts_start: float
    t_end: float | None
    t_first_token: float | None
    t_upstream_start: float | None
    model_requested: str
    stream: bool
    client_ip: str
    user_agent: str
    backend: str
    provider: str
    upstream_model: str
    model_served: str
    adapter: str
    adapter_version: int | None
    attempts: int
    status_code: int
    error_type: str
    error_message: str
    finish_reason: str
    refusal: bool
    truncated: bool
    usage: Usage
    billable: bool
    config_hash: str
    tenant: str
    api_key_id: str
    metadata: dict[str, str] | None
    prompt_id: str
    prompt_version: int | None
    prompt_label: str
    experiment_arm: str
    route_rule: str
    strategy: str
    route_candidates: list[dict[str, Any]] | None
    cache_status: str
    cache_saved_ms: float | None
    cache_distance: float | None
    cache_entry_id: str
    attempt_log: list[Attempt] | None
    trace_id: str
    session_id: str
    parent_request_id: str
    retrieved_chunks: list[str] | None
    retrieved_distances: list[float] | None
    headers: dict[str, str] | None
    body: RequestBody | None
    body_size: int | None
    response_body: bytes | None
    completion_text: list[str]
    chunk_times: list[float]
    chain_steps: list[RequestFacts] | None
    flags: list[str]

    def __repr__(self) -> str:
        return f"RequestFacts({self.request_id!r}, {self.endpoint!r}, status {self.status_code})"


# What a record that lacks a field (an older writer) reads as: the context's defaults.
_DEFAULTS: dict[str, Any] = {
    "request_id": "", "client_request_id": "", "endpoint": "", "t_start": 0.0, "ts_start": 0.0, "t_end": None,
    "t_first_token": None, "t_upstream_start": None, "model_requested": "", "stream": False, "client_ip": "",
    "user_agent": "", "backend": "", "provider": "", "upstream_model": "", "model_served": "", "adapter": "",
    "adapter_version": None, "attempts": 0,
    "status_code": 0, "error_type": "", "error_message": "", "finish_reason": "", "refusal": False, "truncated": False,
    "billable": False, "config_hash": "", "tenant": "", "api_key_id": "", "metadata": None, "prompt_id": "",
    "prompt_version": None, "prompt_label": "", "experiment_arm": "", "route_rule": "", "strategy": "",
    "route_candidates": None, "cache_status": "none", "cache_saved_ms": None, "cache_distance": None,
    "cache_entry_id": "", "attempt_log": None, "trace_id": "", "session_id": "", "parent_request_id": "",
    "retrieved_chunks": None, "retrieved_distances": None, "headers": None, "body_size": None,
}


def decode(payload: bytes) -> RequestFacts | TableRow:
    """The request facts or table row in ``payload``; ``ValueError`` for a record this version
    cannot read."""
    kind = payload[:1]
    if len(payload) < 2 or payload[1] != VERSION:
        raise ValueError(f"facts record: unknown version {payload[1:2]!r}")
    if kind == REQUEST:
        return _request(memoryview(payload))
    if kind == TABLE_ROW:
        table, columns, row = orjson.loads(payload[TABLE_HEADER.size:])
        return TableRow(table, tuple(columns), row)
    raise ValueError(f"facts record: unknown kind {kind!r}")


def as_facts(ctx: RequestFacts | RequestContext, *, keep_text: bool = True) -> RequestFacts:
    """``ctx`` as facts: itself, or a context encoded and decoded as the log would carry it."""
    if isinstance(ctx, RequestFacts):
        return ctx
    facts = decode(encode_request(ctx, keep_text=keep_text))
    assert type(facts) is RequestFacts
    return facts


def _request(view: memoryview) -> RequestFacts:
    try:
        _, _, json_len, body_len, response_len, text_len, times_len, steps_len = REQUEST_HEADER.unpack_from(view)
    except struct.error as exc:
        raise ValueError(f"facts record: {exc}") from None
    pos = REQUEST_HEADER.size
    sections = []
    for length in (json_len, body_len, 0 if response_len == NO_RESPONSE else response_len, text_len, times_len,
                   steps_len):
        sections.append(view[pos:pos + length])
        pos += length
    if pos != len(view):
        raise ValueError(f"facts record: {len(view)} bytes, its header says {pos}")
    facts_json, body, response, text, times, steps = sections
    doc = orjson.loads(facts_json)
    facts = RequestFacts.__new__(RequestFacts)
    fields = facts.__dict__
    fields.update(_DEFAULTS)
    fields.update(doc)
    usage = doc.get("usage")
    facts.usage = Usage(**dict(zip(USAGE_FIELDS, usage))) if usage else Usage()
    log = doc.get("attempt_log")
    facts.attempt_log = [Attempt(**dict(zip(ATTEMPT_FIELDS, a))) for a in log] if log else None
    facts.flags = doc.get("flags") or []
    if facts.flags:  # a field dropped to fit (``null``) reads as its default
        for name, value in doc.items():
            if value is None and _DEFAULTS.get(name) is not None:
                fields[name] = _DEFAULTS[name]
    facts.body = _body(bytes(body), doc.get("body_lite"), facts.flags)
    facts.response_body = None if response_len == NO_RESPONSE else bytes(response)
    facts.completion_text = [str(text, "utf-8", "replace")] if text else []
    facts.chunk_times = _floats(times) if times else []
    facts.chain_steps = _steps(steps) if steps else None
    return facts


def _body(raw: bytes, lite: dict[str, Any] | None, flags: list[str]) -> RequestBody | None:
    """The request body: decoded from ``raw``; for a body kept in part, its small fields
    (``lite``) with the prefix as its logged bytes."""
    if lite is not None:
        return client_body(lite, raw)
    if not raw:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:  # not expected (the gateway parsed it); keep the row, flag it
        flags.append("sanitized:request_body")
        return client_body({}, raw)
    return client_body(data if isinstance(data, dict) else {}, raw)


def _floats(data: memoryview) -> list[float]:
    packed = array("d")
    packed.frombytes(data)
    return packed.tolist()


def _steps(data: memoryview) -> list[RequestFacts]:
    steps = []
    pos = 0
    while pos < len(data):
        (length,) = STEP_LENGTH.unpack_from(data, pos)
        pos += STEP_LENGTH.size
        step = decode(bytes(data[pos:pos + length]))
        if type(step) is not RequestFacts:
            raise ValueError("facts record: a chain step is not a request")
        steps.append(step)
        pos += length
    return steps
