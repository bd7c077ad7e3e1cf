"""The row: one request's facts → one ``llm_requests`` row (+ its ``llm_attempts`` rows).

``REQUEST_COLUMNS`` / ``ATTEMPT_COLUMNS`` name every column with its ClickHouse type (the DDL
in ``schema.py`` is generated from them). ``RowBuilder.request_row(facts)`` returns the values
in column order as JSON-ready Python values (strings for UUID and ``DateTime64``, ``None``
for NULL), which ``encode_rows`` turns into ``JSONCompactEachRow`` bytes: the exact payload
that is inserted and, on failure, spooled, so a replay inserts the very same values.

Rows are built from ``RequestFacts`` (``gateway.telemetry.facts``): the record the serving
process wrote at request end, decoded where rows are built. A ``RequestContext`` passed instead
is first encoded and decoded, so every row goes through the record. Everything here runs off
the request path: metadata parsing, trace ids, tiktoken counting, inter-token percentiles and
cost. Secrets never reach a row: ``api_key_id`` is a fingerprint of the client's key, error
messages are scrubbed of key-like strings, and headers are never copied whole. ``row_flags``
says what was repaired on the way (``sanitized:<field>``, ``truncated:<field>``) or that the
row is a stand-in (``fallback``: it could not be built; ``rejected``: the store refused it).
"""


from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import orjson

from gateway.config.telemetry import BodyLogging
from gateway.core.context import RequestContext
from gateway.core.pricing import PriceTable
from gateway.core.secret_mask import SecretMasker
from gateway.core.tokens import TokenCounter
from gateway.telemetry.columns import ATTEMPT_COLUMN_NAMES, ATTEMPT_COLUMNS, REQUEST_COLUMN_NAMES, REQUEST_COLUMNS
from gateway.telemetry.facts import RequestFacts, as_facts
from gateway.telemetry.record_fallback import fallback_row, rejected_row
from gateway.telemetry.scrub import key_fingerprint, scrub_secrets
from gateway.telemetry.values import UUID_RE, encode_rows, format_ts, load_hook, to_uuid

log = logging.getLogger("gateway.telemetry")

# Body fields that are the content itself or are logged in their own column; the rest of the
# body (sampling parameters and the like) goes to ``params``.
# Content, not settings (the Responses API's ``instructions`` is its system prompt): rows keep
# request bodies only where bodies logging is on. A request that names no model (files, vector
# store searches, thread messages: ``passthrough:``) has no params: any of its fields may be content.
_NOT_PARAMS = frozenset({"model", "messages", "prompt", "input", "instructions", "stream", "stream_options",
                         "metadata", "user", "tools", "functions", "suffix"})
_PARAMS_MAX = 4096
_META_KEYS_MAX = 64
_META_KEY_MAX = 128
_META_VALUE_MAX = 1024
_TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
SESSION_HEADER = "x-gateway-session-id"
PARENT_HEADER = "x-gateway-parent-request-id"
_SESSION_MAX = 256


def parse_metadata_header(value: str) -> dict[str, str]:
    """``x-gateway-metadata``: a JSON object, or ``k=v,k=v`` pairs. Values become strings."""
    value = value.strip()
    if not value:
        return {}
    if value.startswith("{"):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {"_invalid_metadata": value[:_META_VALUE_MAX]}
        return _stringify_map(parsed) if isinstance(parsed, dict) else {}
    out = {}
    for pair in value.split(","):
        key, sep, val = pair.partition("=")
        key = key.strip()
        if key and sep:
            out[key] = val.strip()
    return out


def _stringify_map(data: dict) -> dict[str, str]:
    out = {}
    for key, value in data.items():
        if value is None:
            continue
        out[str(key)] = value if isinstance(value, str) else orjson.dumps(value).decode()
    return out


def _clip_metadata(meta: dict[str, str]) -> dict[str, str]:
    if len(meta) <= _META_KEYS_MAX and all(len(k) <= _META_KEY_MAX and len(v) <= _META_VALUE_MAX
                                           for k, v in meta.items()):
        return meta
    return {k[:_META_KEY_MAX]: v[:_META_VALUE_MAX] for k, v in list(meta.items())[:_META_KEYS_MAX]}


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of an ascending list (``q`` in 0..1)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _cap_text(text: str, max_bytes: int) -> str:
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", "ignore")


class RowBuilder:
    """Builds rows from finished requests' facts.

    ``config_hash``: default hash stamped when a context carries none. ``instance``: this
    gateway instance's name (host name). ``prices``: a ``PriceTable``. ``tokens``: a
    ``TokenCounter``. ``bodies``: the body-logging settings. ``error_message_max``: characters
    of error text kept.
    """

    def __init__(self, *, config_hash: str, instance: str, prices: PriceTable, tokens: TokenCounter,
                 bodies: BodyLogging | None = None, error_message_max: int = 1000):
        self.config_hash = config_hash
        self.instance = instance
        self.prices = prices
        self.tokens = tokens
        self.bodies = bodies or BodyLogging()
        self.error_message_max = error_message_max
        self._redact = load_hook(self.bodies.redact) if self.bodies.redact else None
        # The config's secrets (``SecretMasker``), masked in stored bodies and error messages;
        # set by whoever builds rows for that config (gateway.ingest.builder).
        self.secrets: SecretMasker | None = None

    # --- pieces ----------------------------------------------------------------------
    def _metadata(self, ctx: RequestFacts) -> dict[str, str]:
        meta: dict[str, str] = {}
        body = ctx.body
        if body is not None:
            from_body = body.get("metadata")
            if isinstance(from_body, dict):
                meta.update(_stringify_map(from_body))
        headers = ctx.headers
        if headers is not None:
            header = headers.get("x-gateway-metadata")
            if header:
                meta.update(parse_metadata_header(header))
        if ctx.metadata:
            meta.update(ctx.metadata)
        return _clip_metadata(meta) if meta else meta

    @staticmethod
    def _params(body: dict[str, Any] | None) -> str:
        if not body:
            return ""
        params = {k: v for k, v in body.items() if k not in _NOT_PARAMS}
        if "tools" in body and isinstance(body["tools"], list):
            params["tools"] = len(body["tools"])
        if not params:
            return ""
        try:
            text = orjson.dumps(params, option=orjson.OPT_SORT_KEYS).decode()
        except TypeError:
            return ""
        return text if len(text) <= _PARAMS_MAX else text[:_PARAMS_MAX]

    def _tokens(self, ctx: RequestFacts) -> tuple[int, int, int, int | None, int | None, int]:
        """``(prompt, completion, total, cached, reasoning, estimated)``: as reported, else
        estimated (a request body kept only in part: ~4 bytes per token of its full size)."""
        usage = ctx.usage
        if usage.reported():  # (a duration alone: no tokens, none to estimate)
            prompt = usage.prompt_tokens or 0
            completion = usage.completion_tokens or 0
            total = usage.total_tokens if usage.total_tokens is not None else prompt + completion
            return prompt, completion, total, usage.cached_tokens, usage.reasoning_tokens, 0
        if not ctx.billable:
            return 0, 0, 0, None, None, 0  # nothing reached a model: nothing to bill
        produced = bool(ctx.completion_text)
        model = ctx.model_served or ctx.upstream_model or ctx.model_requested
        if ctx.body_size is not None:
            prompt = max(1, (ctx.body_size + 3) // 4)
        else:
            prompt = self.tokens.count_prompt(ctx.endpoint, ctx.body, model)
        completion = self.tokens.count_text("".join(ctx.completion_text), model) if produced else 0
        return prompt, completion, prompt + completion, None, None, 1

    @staticmethod
    def _session(ctx: RequestFacts, headers: Any) -> tuple[str, str]:
        """``(session_id, parent_request_id)``: set on the context (chain steps), else the
        caller's ``x-gateway-session-id`` / ``x-gateway-parent-request-id`` headers. The parent is
        the ``x-request-id`` the caller saw: a UUID is kept in canonical form (the parent row's
        ``request_id``, or a client's own UUID), any other string verbatim (the parent row's
        ``client_request_id``); ``sessions`` resolves either within the session."""
        session, parent = ctx.session_id, ctx.parent_request_id
        if headers is not None:
            if not session:
                session = (headers.get(SESSION_HEADER) or "")[:_SESSION_MAX]
            if not parent:
                parent = headers.get(PARENT_HEADER) or ""
        parent = parent.strip()[:128]
        if parent and len(parent) in (32, 36) and UUID_RE.match(parent):
            parent = str(uuid.UUID(parent))
        return session, parent

    def _chain_totals(self, ctx: RequestFacts) -> tuple[int, int, int, int | None, float | None]:
        """A chain request's ``(prompt, completion, total, cached, cost)``: the sums of its steps."""
        prompt = completion = total = 0
        cached: int | None = None
        cost: float | None = None
        for step in ctx.chain_steps or ():
            p, c, t, ca, _, _ = self._tokens(step)
            prompt, completion, total = prompt + p, completion + c, total + t
            if ca is not None:
                cached = (cached or 0) + ca
            sc = self.prices.cost((step.model_served, step.upstream_model, step.model_requested), p, c, ca,
                                  step.usage.cache_write_tokens, step.usage)
            if sc is not None:
                cost = (cost or 0.0) + sc
        return prompt, completion, total, cached, cost

    def _bodies(self, ctx: RequestFacts, flags: list[str]) -> tuple[str, str]:
        b = self.bodies
        request = response = ""
        if b.request and ctx.body is not None and ctx.body.raw:
            request = self._redacted("request", ctx.body.raw.decode("utf-8", "replace"))
        if b.response:
            if ctx.response_body is not None:
                try:
                    text = ctx.response_body.decode()
                except UnicodeDecodeError:  # an upstream's bytes: stored, with U+FFFD for the invalid ones
                    text = ctx.response_body.decode("utf-8", "replace")
                    flags.append("sanitized:response_body")
            else:
                text = "".join(ctx.completion_text)
            response = self._redacted("response", text)
        return request, response

    def _redacted(self, kind: str, text: str) -> str:
        if self._redact is not None and text:
            try:
                text = str(self._redact(kind, text))
            except Exception as exc:  # a broken hook must not lose the row; log nothing of the body
                log.warning("body redaction hook failed (%s); %s body not logged", type(exc).__name__, kind)
                return ""
        if self.secrets:  # a backend may echo its key even in a successful answer
            text = self.secrets.mask_text(text)
        return _cap_text(text, self.bodies.max_bytes)

    # --- rows ------------------------------------------------------------------------
    def request_row(self, facts: RequestFacts | RequestContext) -> list[Any]:
        """The ``llm_requests`` values of ``facts`` in ``REQUEST_COLUMNS`` order."""
        ctx = as_facts(facts)
        t0 = ctx.t_start
        t_end = ctx.t_end if ctx.t_end is not None else t0
        status = ctx.status_code  # concluded by gateway.core.outcome before any finisher runs
        error_type = ctx.error_type
        truncated = ctx.truncated
        rid, client_rid = to_uuid(ctx.request_id)
        client_rid = ctx.client_request_id or client_rid
        headers = ctx.headers
        trace_id = ctx.trace_id  # set when tracing is on (the client's trace, or one started here)
        if not trace_id and headers is not None:
            tp = headers.get("traceparent")
            if tp:
                m = _TRACEPARENT_RE.match(tp.strip().lower())
                if m:
                    trace_id = m.group(1)
        body = ctx.body
        user = body.get("user") if body is not None else None
        prompt, completion, total, cached, reasoning, estimated = self._tokens(ctx)

        latency = (t_end - t0) * 1000
        ttft = (ctx.t_first_token - t0) * 1000 if ctx.t_first_token is not None else None
        upstream_ms = None
        if ctx.t_upstream_start is not None:
            # Waiting on the upstream: until its last byte (non-streamed: the body arrived, set
            # as t_first_token; streamed: the stream's end, as chunks are relayed on arrival).
            u_end = ctx.t_first_token if (not ctx.stream and ctx.t_first_token is not None) else t_end
            upstream_ms = max(0.0, (u_end - ctx.t_upstream_start) * 1000)
        overhead = max(0.0, latency - (upstream_ms or 0.0))
        itl_p50 = itl_p95 = itl_max = None
        times = ctx.chunk_times
        if len(times) >= 2:
            gaps = [b - a for a, b in zip(times, times[1:])]
            gaps.sort()
            itl_p50 = _percentile(gaps, 0.5) * 1000
            itl_p95 = _percentile(gaps, 0.95) * 1000
            itl_max = gaps[-1] * 1000
        tps = None
        if completion and upstream_ms:
            tps = completion / (upstream_ms / 1000)
        cache_write = ctx.usage.cache_write_tokens
        if ctx.chain_steps:  # a chain: its steps' sums (each step has a row of its own too)
            prompt, completion, total, cached, cost = self._chain_totals(ctx)
            writes = [s.usage.cache_write_tokens for s in ctx.chain_steps if s.usage.cache_write_tokens is not None]
            cache_write = sum(writes) if writes else None
        else:
            cost = self.prices.cost((ctx.model_served, ctx.upstream_model, ctx.model_requested),
                                    prompt, completion, cached, cache_write, ctx.usage)
        message = ctx.error_message
        if message:
            message = scrub_secrets(message[: self.error_message_max])
            if self.secrets:
                message = self.secrets.mask_text(message)
        flags = list(ctx.flags)
        request_body, response_body = self._bodies(ctx, flags) if (self.bodies.request or self.bodies.response) \
            else ("", "")
        return [
            rid, format_ts(ctx.ts_start), format_ts(ctx.ts_start + (t_end - t0)), trace_id,
            ctx.config_hash or self.config_hash, self.instance,
            ctx.tenant, ctx.api_key_id, user if isinstance(user, str) else "",
            self._metadata(ctx), ctx.client_ip, ctx.user_agent, client_rid, *self._session(ctx, headers),
            ctx.retrieved_chunks or [], ctx.retrieved_distances or [],
            ctx.endpoint, ctx.model_requested, ctx.stream, self._params(body) if ctx.model_requested else "",
            ctx.prompt_id, ctx.prompt_version, ctx.prompt_label, ctx.experiment_arm,
            ctx.backend, ctx.provider, ctx.model_served, ctx.adapter, ctx.adapter_version, ctx.route_rule,
            ctx.strategy,
            orjson.dumps(ctx.route_candidates).decode() if ctx.route_candidates else "",
            min(ctx.attempts, 255), ctx.cache_status, ctx.cache_saved_ms, ctx.cache_distance, ctx.cache_entry_id,
            status, error_type, message, ctx.finish_reason, ctx.refusal, truncated, flags,
            prompt, completion, total, cached, cache_write, reasoning, ctx.usage.audio_seconds, estimated,
            ttft, latency, upstream_ms, overhead, itl_p50, itl_p95, itl_max, tps,
            cost,
            request_body, response_body,
        ]

    def attempt_rows(self, facts: RequestFacts | RequestContext, request_uuid: str) -> list[list[Any]]:
        """The ``llm_attempts`` rows of ``facts`` (one synthesised from the request when the
        router recorded none but an upstream was called)."""
        ctx = as_facts(facts)
        attempts = ctx.attempt_log
        rows = []
        if attempts:
            for i, a in enumerate(attempts, 1):
                end = a.t_end if a.t_end is not None else (ctx.t_end or a.t_start)
                rows.append([request_uuid, min(i, 255), format_ts(ctx.ts_start + (a.t_start - ctx.t_start)),
                             ctx.tenant, ctx.model_requested, a.backend, a.provider, a.model,
                             a.status_code, a.error_type, max(0.0, (end - a.t_start) * 1000),
                             (a.t_first_byte - a.t_start) * 1000 if a.t_first_byte is not None else None,
                             float(getattr(a, "backoff_ms", 0.0) or 0.0)])
            return rows
        if ctx.t_upstream_start is None:
            return rows
        t_start = ctx.t_upstream_start
        end = ctx.t_first_token if (not ctx.stream and ctx.t_first_token is not None) else (ctx.t_end or t_start)
        return [[request_uuid, max(1, min(ctx.attempts, 255)), format_ts(ctx.ts_start + (t_start - ctx.t_start)),
                 ctx.tenant, ctx.model_requested, ctx.backend, ctx.provider, ctx.upstream_model,
                 ctx.status_code, ctx.error_type, max(0.0, (end - t_start) * 1000),
                 (ctx.t_first_token - t_start) * 1000 if ctx.t_first_token is not None else None, 0.0]]

    def fallback_row(self, ctx: Any, exc: BaseException) -> list[Any]:
        """A minimal row for a request whose full row could not be built (never lose a request)."""
        return fallback_row(ctx, exc, config_hash=self.config_hash, instance=self.instance)

    def rejected_row(self, row: list[Any], error: BaseException | str) -> list[Any]:
        """A minimal row standing in for ``row``, which the store refused (flag ``rejected``)."""
        return rejected_row(row, error, config_hash=self.config_hash, instance=self.instance)


__all__ = ["ATTEMPT_COLUMNS", "ATTEMPT_COLUMN_NAMES", "PARENT_HEADER", "REQUEST_COLUMNS",
           "REQUEST_COLUMN_NAMES", "SESSION_HEADER", "RowBuilder", "encode_rows", "format_ts", "key_fingerprint",
           "load_hook", "parse_metadata_header", "scrub_secrets", "to_uuid"]
