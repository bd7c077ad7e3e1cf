"""The serving process's half of the facts record: what a finished request must tell the
ingester so that it can build the request's rows, encoded once, at request end, on the event loop.

A record is the facts, not the row: no pricing, no token counting, no metadata parsing, no
percentiles here (the ingester does all of that, ``gateway.telemetry.record``). What it keeps
is exactly what ``RowBuilder`` reads, and nothing secret: the client's key only as its
fingerprint, and of the headers only those the row reads (never ``Authorization``/``api-key``).

Layout (little endian)::

    kind (1 byte: b"R" request, b"T" table row) | version (1 byte)
    b"R": u32 json_len, body_len, response_len (0xFFFFFFFF: none), text_len, times_len, steps_len
          | JSON facts | request body | response body | completion text (UTF-8)
          | chunk times (float64 each) | chain steps (each: u32 length | a b"R" record)
    b"T": JSON [table, columns, row]

The JSON facts are an object keyed by ``RequestContext`` attribute names (a reader fills what
an older writer left out with the context's defaults), except ``usage`` and each
``attempt_log`` entry: lists in ``Usage``'s and ``Attempt``'s field order (cheaper to encode).
Bytes travel as raw sections, not inside the JSON: the client's request body is its own bytes
(no copy, no escaping), the chunk times are packed doubles (exact, 8 bytes each).

Nothing a request carries can make a record fail or grow without bound: lone surrogates become
U+FFFD and oversized fields are cut, each named in the record's ``flags`` (then in the row's
``row_flags``); see ``gateway.telemetry.facts_repair``.
"""

from __future__ import annotations

import struct
from array import array
from typing import Any

import orjson

from gateway.core.context import Attempt, Usage
from gateway.core.outcome import model_worked
from gateway.core.request_body import logged_bytes
from gateway.telemetry.facts_repair import LIMITS, Repair, cut_utf8, utf8
from gateway.telemetry.scrub import key_fingerprint

REQUEST = b"R"
TABLE_ROW = b"T"
VERSION = 1
REQUEST_HEADER = struct.Struct("<cB6I")
TABLE_HEADER = struct.Struct("<cB")
STEP_LENGTH = struct.Struct("<I")
NO_RESPONSE = 0xFFFFFFFF

# Headers the row reads (metadata, trace, session); never a credential. Lower case: aiohttp's
# headers are case-insensitive, the decoded record's are a plain dict.
ROW_HEADERS = ("x-gateway-metadata", "traceparent", "x-gateway-session-id", "x-gateway-parent-request-id")

BODY_MAX = 1 << 20  # bytes of the request body kept; above it, the prefix (and the body's small fields)
RESPONSE_MAX = 1 << 20  # bytes of a non-streamed answer kept (logged response bodies)
TEXT_MAX = 1 << 20  # bytes of completion text kept
TIMES_MAX = 1 << 17  # chunk times kept (a stream's inter-token gaps)
JSON_MAX = 256 * 1024  # above it, the JSON part's long strings and lists are cut (then its largest fields dropped)
STEPS_MAX = 16 << 20  # bytes of a chain's step records: the whole record stays far below the log's 64 MiB
TABLE_ROW_MAX = 4 << 20  # a prompt-version or feedback row above it has its long strings cut

# The body fields that hold the prompt itself: an oversized body keeps its other fields whole
# (params, user, metadata, tools for the row) and these only in its cut prefix.
_CONTENT_KEYS = frozenset({"messages", "prompt", "input", "suffix"})

_dumps = orjson.dumps
_pack = REQUEST_HEADER.pack

# ``usage`` and ``attempt_log`` entries are encoded as lists in these field orders (below, by
# hand: cheaper than orjson's dataclass path); a field added to either must be added there too.
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens",
                "cache_write_tokens", "audio_tokens", "image_tokens", "audio_output_tokens", "audio_seconds")
ATTEMPT_FIELDS = ("backend", "provider", "model", "t_start", "t_end", "t_first_byte", "status_code", "error_type",
                  "backoff_ms", "span_id")
if tuple(Usage.__dataclass_fields__) != USAGE_FIELDS or tuple(Attempt.__dataclass_fields__) != ATTEMPT_FIELDS:
    raise RuntimeError("facts_encode: Usage or Attempt changed; update USAGE_FIELDS/ATTEMPT_FIELDS and the encoder")


def encode_request(ctx: Any, *, keep_text: bool) -> bytes:
    """The facts record of a finished request (a ``RequestContext``, after
    ``outcome.conclude``).

    ``keep_text``: keep the answer (completion text, and a non-streamed response body) even
    when the upstream reported usage: set it when response bodies are logged. Without usage
    the completion text is always kept: the ingester estimates its tokens from it.
    """
    flags: list[str] = []
    usage = ctx.usage
    headers = ctx.headers
    kept_headers = None
    if headers is not None:
        kept_headers = {}
        get = headers.get
        for name in ROW_HEADERS:
            value = get(name)
            if value:
                kept_headers[name] = value
    doc = {
        "request_id": ctx.request_id, "client_request_id": ctx.client_request_id, "endpoint": ctx.endpoint,
        "t_start": ctx.t_start, "ts_start": ctx.ts_start, "t_end": ctx.t_end, "t_first_token": ctx.t_first_token,
        "t_upstream_start": ctx.t_upstream_start, "model_requested": ctx.model_requested, "stream": ctx.stream,
        "client_ip": ctx.client_ip, "user_agent": ctx.user_agent, "backend": ctx.backend, "provider": ctx.provider,
        "upstream_model": ctx.upstream_model, "model_served": ctx.model_served, "adapter": ctx.adapter,
        "adapter_version": ctx.adapter_version, "attempts": ctx.attempts,
        "status_code": ctx.status_code, "error_type": ctx.error_type, "error_message": ctx.error_message,
        "finish_reason": ctx.finish_reason, "refusal": ctx.refusal, "truncated": ctx.truncated,
        "usage": [usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.cached_tokens,
                  usage.reasoning_tokens, usage.cache_write_tokens, usage.audio_tokens, usage.image_tokens,
                  usage.audio_output_tokens, usage.audio_seconds],
        "billable": model_worked(ctx), "config_hash": ctx.config_hash, "tenant": ctx.tenant,
        "api_key_id": ctx.api_key_id or key_fingerprint(headers), "metadata": ctx.metadata,
        "prompt_id": ctx.prompt_id, "prompt_version": ctx.prompt_version, "prompt_label": ctx.prompt_label,
        "experiment_arm": ctx.experiment_arm, "route_rule": ctx.route_rule, "strategy": ctx.strategy,
        "route_candidates": ctx.route_candidates, "cache_status": ctx.cache_status,
        "cache_saved_ms": ctx.cache_saved_ms, "cache_distance": ctx.cache_distance,
        "cache_entry_id": ctx.cache_entry_id, "attempt_log": _attempts(ctx.attempt_log), "trace_id": ctx.trace_id,
        "session_id": ctx.session_id, "parent_request_id": ctx.parent_request_id,
        "retrieved_chunks": ctx.retrieved_chunks, "retrieved_distances": ctx.retrieved_distances,
        "headers": kept_headers,
    }
    body = _request_body(ctx.body, doc, flags)
    keep_text = keep_text or not usage.reported()
    text = b""
    response = None
    if keep_text:
        if ctx.completion_text:
            text, sanitized = utf8("".join(ctx.completion_text))
            if sanitized:
                flags.append("sanitized:completion_text")
            if len(text) > TEXT_MAX:
                text = cut_utf8(text, TEXT_MAX)
                flags.append("truncated:completion_text")
        response = ctx.response_body
        if response is not None and len(response) > RESPONSE_MAX:
            response = response[:RESPONSE_MAX]
            flags.append("truncated:response_body")
    chunk_times = ctx.chunk_times
    if len(chunk_times) > TIMES_MAX:
        chunk_times = chunk_times[:TIMES_MAX]
        flags.append("truncated:chunk_times")
    times = array("d", chunk_times).tobytes() if chunk_times else b""
    steps = _steps(ctx.chain_steps, flags) if ctx.chain_steps else b""
    if flags:
        doc["flags"] = flags
    try:
        facts = _dumps(doc)
    except TypeError:  # orjson's JSONEncodeError: a lone surrogate, or a value JSON cannot hold
        facts = _repaired(doc)
    if len(facts) > JSON_MAX:
        facts = _fitted(doc)
    response_len = NO_RESPONSE if response is None else len(response)
    head = _pack(REQUEST, VERSION, len(facts), len(body), response_len, len(text), len(times), len(steps))
    return b"".join((head, facts, body, response or b"", text, times, steps))


def _steps(chain_steps: list[Any], flags: list[str]) -> bytes:
    """A chain's steps, each as a record of its own (the chain's row sums their tokens and
    cost), up to ``STEPS_MAX`` bytes in all."""
    parts: list[bytes] = []
    total = 0
    for step in chain_steps:
        record = encode_request(step, keep_text=False)
        total += STEP_LENGTH.size + len(record)
        if total > STEPS_MAX:
            flags.append("truncated:chain_steps")
            break
        parts += (STEP_LENGTH.pack(len(record)), record)
    return b"".join(parts)


def _attempts(log: list[Any] | None) -> list[list[Any]] | None:
    """The attempts as lists in ``Attempt``'s field order (orjson's dataclass path costs more)."""
    if not log:
        return None
    return [[a.backend, a.provider, a.model, a.t_start, a.t_end, a.t_first_byte, a.status_code, a.error_type,
             a.backoff_ms, a.span_id] for a in log]


def _request_body(body: dict[str, Any] | None, doc: dict[str, Any], flags: list[str]) -> bytes:
    """The request as the client sent it (or as a stage changed it), at most ``BODY_MAX``
    bytes; an oversized body adds its small fields (``body_lite``) and full size to ``doc``."""
    try:
        raw = logged_bytes(body)
    except TypeError:  # a stage's body with a lone surrogate or a non-JSON value
        repair = Repair()
        raw = _dumps(repair.field("request_body", body))
        flags += repair.flags
    if len(raw) <= BODY_MAX:
        return raw
    assert body is not None  # logged_bytes(None) is empty
    doc["body_lite"] = {k: v for k, v in body.items() if k not in _CONTENT_KEYS}
    doc["body_size"] = len(raw)
    flags.append("truncated:request_body")
    return cut_utf8(raw, BODY_MAX)


def _repaired(doc: dict[str, Any], limits: tuple[int, int] | None = None) -> bytes:
    """``doc`` as JSON after every field is made storable (and cut to ``limits``); the fields'
    flags join ``doc["flags"]``."""
    repair = Repair(limits)
    fixed = {name: repair.field(name, value) for name, value in doc.items() if name != "flags"}
    return _dumps(_flagged(fixed, doc.get("flags"), repair.flags))


def _fitted(doc: dict[str, Any]) -> bytes:
    """``doc`` as JSON of at most ``JSON_MAX`` bytes: cut to each of ``LIMITS`` in turn, then,
    if it still does not fit, without its largest fields (ids and times are never among them)."""
    for limits in LIMITS:
        data = _repaired(doc, limits)
        if len(data) <= JSON_MAX:
            return data
    fixed = orjson.loads(data)
    flags = fixed.pop("flags", [])
    sizes = sorted(((len(_dumps(value)), name) for name, value in fixed.items()), reverse=True)
    total = len(data)
    dropped = []
    for size, name in sizes:
        if total <= JSON_MAX - 4096:  # room for the flags
            break
        fixed[name] = None
        total -= size
        dropped.append(f"truncated:{name}")
    return _dumps(_flagged(fixed, flags, dropped))


def _flagged(fixed: dict[str, Any], flags: list[str] | None, more: list[str]) -> dict[str, Any]:
    merged = list(flags or ())
    merged += [f for f in more if f not in merged]
    if merged:
        fixed["flags"] = merged
    return fixed


def encode_table_row(table: str, columns: tuple[str, ...], row: list[Any]) -> bytes:
    """The record of one row of another table (``prompt_versions``, ``llm_feedback``): its
    values as given, with lone surrogates replaced and, above ``TABLE_ROW_MAX``, long strings cut."""
    doc = [table, list(columns), row]
    try:
        data = _dumps(doc)
    except TypeError:
        data = _dumps(Repair().field("row", doc))
    if len(data) > TABLE_ROW_MAX:
        data = _dumps(Repair(LIMITS[0]).field("row", doc))
    return TABLE_HEADER.pack(TABLE_ROW, VERSION) + data
