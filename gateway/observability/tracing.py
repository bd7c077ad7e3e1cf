"""OpenTelemetry traces: a SERVER span per request, a CLIENT span per upstream attempt.

Nothing wraps the request path. When a request arrives, ``Tracing.start(ctx, request)``
settles its ids: the client's W3C ``traceparent`` (its trace id, its span as our parent,
its sampled flag) or a new random trace id, plus a random SERVER span id, and the sampling
decision. ``ctx.trace_id`` (the ClickHouse row's ``trace_id``) is set there. Each upstream
attempt asks ``TraceIds.outbound`` for its headers: a fresh CLIENT span id, recorded on the
``Attempt`` and sent as ``traceparent: 00-<trace>-<client span>-<flags>`` (plus the client's
``tracestate``), so the upstream's own spans hang under the attempt's span.

When the response has ended, ``Tracing.finish(ctx)`` (a finisher) builds the spans from what
the context recorded — ``ts_start``/``t_start`` convert ``perf_counter`` times to epoch
nanoseconds — as finished SDK ``ReadableSpan``s carrying the very ids chosen up front, and
hands them to the span processors' ``on_end``. The sampling decision was made when the
request arrived (``ParentBased(TraceIdRatioBased)``'s rule), so the SDK's ``Tracer`` (live
spans, a sampler run, attribute cleaning under a lock: ~80 µs for two spans here) is not
needed; building the two ``ReadableSpan``s costs ~12 µs. A ``BatchSpanProcessor`` exports
them from its own thread (OTLP over HTTP/protobuf), dropping spans when its queue is full
rather than ever blocking a request. Unsampled requests build no spans at all.

The OpenTelemetry SDK is imported only when tracing is enabled (``pip install
'llm-gateway[otel]'``).
"""

from __future__ import annotations

import logging
import os
import random
import re
import socket
from collections.abc import Callable, Mapping
from typing import Any

from gateway.config.observability import TracingSettings
from gateway.core.context import Attempt, RequestContext
from gateway.observability import genai

log = logging.getLogger("gateway.observability")

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_KNOWN_ROUTES = frozenset({"chat/completions", "completions", "embeddings", "responses"})
_MASK64 = (1 << 64) - 1


def parse_traceparent(value: str) -> tuple[int, int, int] | None:
    """``(trace_id, parent span id, flags)`` of a valid W3C ``traceparent``, else ``None``.

    Version ``ff`` and all-zero ids are invalid; version ``00`` allows nothing after the flags
    (later versions may add fields, which are ignored).
    """
    m = _TRACEPARENT.fullmatch(value.strip().lower())
    if m is None:
        return None
    version, trace, span, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace, 16), int(span, 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(flags, 16)


class TraceIds:
    """The ids of one request's trace, chosen when it arrives (``ctx.trace``)."""

    __slots__ = ("trace_id", "trace_hex", "span_id", "parent_id", "sampled", "flags", "tracestate", "method",
                 "path", "scheme", "host", "_rng")

    def __init__(self, trace_id: int, span_id: int, parent_id: int | None, sampled: bool,
                 tracestate: str | None, rng: random.Random):
        self.trace_id = trace_id
        self.trace_hex = f"{trace_id:032x}"
        self.span_id = span_id
        self.parent_id = parent_id
        self.sampled = sampled
        self.flags = "01" if sampled else "00"
        self.tracestate = tracestate
        self.method = self.path = self.scheme = self.host = ""
        self._rng = rng

    def traceparent(self, span_id: int) -> str:
        return f"00-{self.trace_hex}-{span_id:016x}-{self.flags}"

    def outbound(self, attempt: Attempt, headers: Mapping[str, str] | None) -> dict[str, str]:
        """Headers for one upstream attempt: ``headers`` plus ``traceparent`` naming a new CLIENT
        span (its id is kept on ``attempt``) and the client's ``tracestate``."""
        span_id = self._rng.getrandbits(64) or 1
        attempt.span_id = span_id
        out = dict(headers) if headers else {}
        out["traceparent"] = self.traceparent(span_id)
        if self.tracestate:
            out["tracestate"] = self.tracestate
        return out


def _sdk():
    try:
        from opentelemetry import trace as api
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise RuntimeError("observability.tracing.enabled needs the OpenTelemetry SDK: "
                           "pip install 'llm-gateway[otel]'") from exc
    return api, Resource, Event, ReadableSpan, InstrumentationScope


def check_available() -> None:
    """Raise ``RuntimeError`` when tracing is enabled but the SDK is missing."""
    _sdk()


def _version() -> str | None:
    try:
        from importlib.metadata import version
        return version("llm-gateway")
    except Exception:  # not installed as a distribution (a source checkout)
        return None


class Tracing:
    """Trace ids for each request and spans for each finished one (see the module doc).

    ``start()``/``stop()`` create the exporting ``BatchSpanProcessor`` and flush it (with the
    app); ``add_processor(p)`` adds any SDK span processor (tests use an in-memory exporter).
    """

    def __init__(self, settings: TracingSettings, redact: Callable[[str, str], str] | None = None):
        self.settings = settings
        # The rows' ``telemetry.bodies.redact`` hook, applied to captured content as well.
        self.redact = redact
        self._rng = random.Random(os.urandom(16))
        # TraceIdRatioBased's rule (the low 64 bits of the trace id against ratio * 2**64): the
        # decision every SDK-based service makes for the same trace id.
        self._bound = round(settings.sample_ratio * (1 << 64))
        self._processors: list = []
        self._running = False
        self._sdk: tuple[Any, ...] | None = None  # the optional SDK's classes, imported at start
        self._resource = None
        self._scope = None

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        api, Resource, Event, ReadableSpan, InstrumentationScope = self._sdk = _sdk()
        s = self.settings
        attrs = {"service.name": s.service_name, "service.instance.id": f"{socket.gethostname()}:{os.getpid()}"}
        version = _version()
        if version:
            attrs["service.version"] = version
        attrs.update(s.resource_attributes)
        self._resource = Resource.create(attrs)
        self._scope = InstrumentationScope("llm-gateway", version)
        self._sampled_flags = api.TraceFlags(api.TraceFlags.SAMPLED)
        self._unset = api.Status(api.StatusCode.UNSET)
        self._error = api.Status(api.StatusCode.ERROR)
        exporter = self._exporter()
        if exporter is not None:
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            b = s.batch
            self._processors.insert(0, BatchSpanProcessor(
                exporter, max_queue_size=b.max_queue_size, schedule_delay_millis=b.schedule_delay_ms,
                max_export_batch_size=min(b.max_export_batch_size, b.max_queue_size),
                export_timeout_millis=b.export_timeout_ms))
        self._running = True

    def _exporter(self):
        s = self.settings
        if s.exporter == "none":
            return None
        if s.exporter == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter
            return ConsoleSpanExporter()
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        return OTLPSpanExporter(endpoint=s.endpoint, headers=dict(s.headers) or None, timeout=s.timeout_s,
                                compression=Compression.Gzip if s.compression == "gzip" else Compression.NoCompression)

    def add_processor(self, processor) -> None:
        """Add an SDK ``SpanProcessor``; it receives every finished span (``on_end``)."""
        self._processors.append(processor)

    def stop(self) -> None:
        """Export what is queued (bounded by the export timeout) and stop the export thread."""
        self._running = False
        processors, self._processors = self._processors, []
        for p in processors:
            try:
                p.shutdown()
            except Exception:  # a broken processor must not stop the others
                log.exception("span processor shutdown failed")

    # --- request start (hot path: a few microseconds) ----------------------------------
    def start_request(self, ctx: RequestContext, request) -> None:
        """Settle ``ctx``'s trace ids (``ctx.trace``, ``ctx.trace_id``) and echo them to the
        client in ``traceresponse``."""
        headers = request.headers
        rng = self._rng
        tp = headers.get("traceparent")
        parsed = parse_traceparent(tp) if tp else None
        if parsed is not None:
            trace_id, parent_id, flags = parsed
            if self.settings.parent_based:
                sampled = bool(flags & 1)
            else:
                sampled = (trace_id & _MASK64) < self._bound
            tracestate = headers.get("tracestate") or None
        else:
            trace_id = rng.getrandbits(128) or 1
            parent_id, tracestate = None, None
            sampled = (trace_id & _MASK64) < self._bound
        ids = TraceIds(trace_id, rng.getrandbits(64) or 1, parent_id, sampled, tracestate, rng)
        ids.method, ids.path, ids.scheme, ids.host = request.method, request.path, request.scheme, request.host
        ctx.trace = ids
        ctx.trace_id = ids.trace_hex
        ctx.response_headers = {"traceresponse": ids.traceparent(ids.span_id)}

    # --- request end: the spans ----------------------------------------------------------
    def finish(self, ctx: RequestContext) -> None:
        ids = ctx.trace
        if ids is None or not ids.sampled or not self._running or self._sdk is None:
            return
        api, _, Event, ReadableSpan, _ = self._sdk
        SpanKind, SpanContext = api.SpanKind, api.SpanContext
        s = self.settings
        base_ns = int(ctx.ts_start * 1e9)
        t0 = ctx.t_start
        t_end = ctx.t_end if ctx.t_end is not None else t0

        def ns(t: float) -> int:
            return base_ns + int((t - t0) * 1e9)

        state = api.TraceState.from_header([ids.tracestate]) if ids.tracestate else None
        flags = self._sampled_flags
        trace_id = ids.trace_id
        parent = None
        if ids.parent_id is not None:
            parent = SpanContext(trace_id, ids.parent_id, is_remote=True, trace_flags=flags, trace_state=state)
        server_ctx = SpanContext(trace_id, ids.span_id, is_remote=False, trace_flags=flags, trace_state=state)
        endpoint = ctx.endpoint
        operation = genai.operation_name(endpoint)
        status = ctx.status_code  # concluded by gateway.core.outcome before any finisher runs
        route = f"/v1/{endpoint}" if endpoint in _KNOWN_ROUTES else "/v1/{endpoint}"
        method = ids.method or "POST"
        attrs: dict[str, Any] = {
            "http.request.method": method, "http.route": route, "url.path": ids.path, "url.scheme": ids.scheme,
            "http.response.status_code": status, "gen_ai.operation.name": operation,
            "llm_gateway.request_id": ctx.request_id, "llm_gateway.cache_status": ctx.cache_status,
            "llm_gateway.attempts": ctx.attempts,
        }
        if ids.host:
            host, _, port = ids.host.rpartition(":") if ids.host.count(":") == 1 else (ids.host, "", "")
            attrs["server.address"] = host or ids.host
            if port.isdigit():
                attrs["server.port"] = int(port)
        if ctx.client_ip:
            attrs["client.address"] = ctx.client_ip
        if ctx.user_agent:
            attrs["user_agent.original"] = ctx.user_agent
        if ctx.model_requested:
            attrs["gen_ai.request.model"] = ctx.model_requested
        for key, value in (("llm_gateway.route_rule", ctx.route_rule), ("llm_gateway.strategy", ctx.strategy),
                           ("llm_gateway.backend", ctx.backend), ("llm_gateway.tenant", ctx.tenant),
                           ("llm_gateway.api_key_id", ctx.api_key_id), ("llm_gateway.prompt.id", ctx.prompt_id),
                           ("llm_gateway.prompt.label", ctx.prompt_label),
                           ("llm_gateway.experiment_arm", ctx.experiment_arm),
                           ("llm_gateway.config_hash", ctx.config_hash)):
            if value:
                attrs[key] = value
        if ctx.prompt_version is not None:
            attrs["llm_gateway.prompt.version"] = ctx.prompt_version
        if ctx.truncated:
            attrs["llm_gateway.truncated"] = True
        error_type = ctx.error_type or (str(status) if status >= 500 else "")
        if error_type:
            attrs["error.type"] = error_type
        spans = []
        attempts = ctx.attempt_log or ()
        content_to = attrs if s.capture_content else None
        if attempts:
            shared = genai.request_attributes(ctx.body)
            shared["gen_ai.operation.name"] = operation
            runtime = ctx.runtime
            last = len(attempts) - 1
            answered = ctx.t_upstream_headers is not None
            for i, a in enumerate(attempts):
                if not a.span_id:
                    continue
                answering = i == last and answered
                c_attrs, error = self._attempt_attributes(ctx, a, i, answering, shared, runtime)
                if i == last and content_to is not None:  # prompts and completions on the inference span
                    self._content(ctx, c_attrs)
                    content_to = None
                events: tuple[Any, ...] = ()
                if answering and ctx.stream and ctx.t_first_token is not None:
                    events = (Event("gen_ai.first_token", timestamp=ns(ctx.t_first_token)),)
                # The answering attempt lasts until its response was relayed to the end.
                end = t_end if answering or a.t_end is None else a.t_end
                spans.append(ReadableSpan(
                    f"{operation} {a.model}",
                    context=SpanContext(trace_id, a.span_id, is_remote=False, trace_flags=flags, trace_state=state),
                    parent=server_ctx, resource=self._resource, attributes=c_attrs, events=events,
                    kind=SpanKind.CLIENT, status=self._error if error else self._unset, start_time=ns(a.t_start),
                    end_time=ns(max(end, a.t_start)), instrumentation_scope=self._scope))
        if content_to is not None:  # no upstream call (a cache hit, a rejection)
            self._content(ctx, content_to)
        server_status = self._unset
        if status >= 500:
            server_status = api.Status(api.StatusCode.ERROR, (ctx.error_message or "")[:200] or None)
        spans.append(ReadableSpan(
            f"{method} {route}", context=server_ctx, parent=parent, resource=self._resource, attributes=attrs,
            kind=SpanKind.SERVER, status=server_status, start_time=ns(t0), end_time=ns(t_end),
            instrumentation_scope=self._scope))
        for processor in self._processors:
            for span in spans:
                processor.on_end(span)

    @staticmethod
    def _attempt_attributes(ctx: RequestContext, a: Attempt, i: int, answering: bool, shared: dict,
                            runtime) -> tuple[dict, str]:
        attrs = dict(shared)
        attrs["gen_ai.provider.name"] = genai.provider_name(a.provider)
        attrs["gen_ai.request.model"] = a.model
        attrs["llm_gateway.backend"] = a.backend
        attrs["llm_gateway.attempt"] = i + 1
        if a.backoff_ms:
            attrs["llm_gateway.backoff_ms"] = a.backoff_ms
        client = runtime.clients.get(a.backend) if runtime is not None else None
        address = genai.server_address(client.backend.base_url) if client is not None else None
        if address is not None:
            attrs["server.address"], attrs["server.port"] = address
        if a.status_code:
            attrs["http.response.status_code"] = a.status_code
        error = a.error_type
        if error == "client_error" or (not error and a.status_code >= 400):
            error = str(a.status_code)
        if answering:
            if ctx.model_served:
                attrs["gen_ai.response.model"] = ctx.model_served
            if ctx.response_id:
                attrs["gen_ai.response.id"] = ctx.response_id
            if ctx.finish_reason:
                attrs["gen_ai.response.finish_reasons"] = (ctx.finish_reason,)
            u = ctx.usage
            if u.prompt_tokens is not None:
                attrs["gen_ai.usage.input_tokens"] = u.prompt_tokens
            if u.completion_tokens is not None:
                attrs["gen_ai.usage.output_tokens"] = u.completion_tokens
            if u.cached_tokens is not None:
                attrs["gen_ai.usage.cache_read.input_tokens"] = u.cached_tokens
            if ctx.stream and ctx.t_first_token is not None:
                attrs["llm_gateway.ttft_ms"] = round((ctx.t_first_token - a.t_start) * 1000, 3)
            if not error and ctx.error_type and (ctx.status_code or 0) >= 500:
                error = ctx.error_type  # failed mid-stream, after a 200
        if error:
            attrs["error.type"] = error
        return attrs, error

    def _content(self, ctx: RequestContext, attrs: dict) -> None:
        """Prompts and completions, redacted as rows are: the ``telemetry.bodies.redact`` hook,
        then the config's secrets masked."""
        limit = self.settings.content_max_chars
        redact = self.redact
        secrets = ctx.runtime.secrets if ctx.runtime is not None else None

        def scrubber(kind: str):
            if redact is None and not secrets:
                return None

            def scrub(text: str) -> str:
                if redact is not None:
                    try:
                        text = str(redact(kind, text))
                    except Exception:  # as for rows: a failing hook means no content, never raw
                        return ""
                return secrets.mask_text(text) if secrets else text
            return scrub

        inputs = genai.input_messages(ctx.endpoint, ctx.body)
        if inputs is not None:
            text = genai.as_json(inputs, limit, scrubber("request"))
            if text:
                attrs["gen_ai.input.messages"] = text
        outputs = genai.output_messages(ctx.completion_text, ctx.finish_reason)
        if outputs is not None:
            text = genai.as_json(outputs, limit, scrubber("response"))
            if text:
                attrs["gen_ai.output.messages"] = text
