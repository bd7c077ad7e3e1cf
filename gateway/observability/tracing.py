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
nanoseconds — with the very ids chosen up front (``_PresetIds`` hands them to the SDK's
tracer), and ends them with explicit timestamps. A ``BatchSpanProcessor`` exports them from
its own thread (OTLP over HTTP/protobuf), dropping spans when its queue is full rather than
ever blocking a request. Unsampled requests build no spans at all.

The OpenTelemetry SDK is imported only when tracing is enabled (``pip install
'llm-gateway[otel]'``).
"""

from __future__ import annotations

import logging
import os
import random
import re
import socket
import threading
from collections.abc import Mapping
from typing import Any

from gateway.config.observability import TracingSettings
from gateway.context import Attempt, RequestContext
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


class _PresetIds:
    """An OpenTelemetry ``IdGenerator`` that returns the ids the gateway already chose (and
    propagated) for the span being created; random ones otherwise. Per thread."""

    def __init__(self):
        self._next = threading.local()
        self._rng = random.Random(os.urandom(16))

    def preset(self, trace_id: int | None, span_id: int) -> None:
        self._next.trace_id = trace_id
        self._next.span_id = span_id

    def generate_trace_id(self) -> int:
        value = getattr(self._next, "trace_id", None)
        if value:
            self._next.trace_id = None
            return value
        return self._rng.getrandbits(128) or 1

    def generate_span_id(self) -> int:
        value = getattr(self._next, "span_id", None)
        if value:
            self._next.span_id = None
            return value
        return self._rng.getrandbits(64) or 1

    def is_trace_id_random(self) -> bool:
        # Client-supplied trace ids need not be random: don't claim the W3C random flag.
        return False


def _sdk():
    try:
        from opentelemetry import trace as api
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.id_generator import IdGenerator
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise RuntimeError("observability.tracing.enabled needs the OpenTelemetry SDK: "
                           "pip install 'llm-gateway[otel]'") from exc
    return api, Resource, TracerProvider, IdGenerator, ParentBased, TraceIdRatioBased


def check_available() -> None:
    """Raise ``RuntimeError`` when tracing is enabled but the SDK is missing."""
    _sdk()


class Tracing:
    """Trace ids for each request and spans for each finished one (see the module doc).

    ``start()``/``stop()`` create and shut down the ``TracerProvider`` (with the app);
    ``add_processor(p)`` adds a span processor (tests use an in-memory exporter).
    """

    def __init__(self, settings: TracingSettings):
        self.settings = settings
        self._rng = random.Random(os.urandom(16))
        self._ratio = settings.sample_ratio
        # The same rule as the SDK's TraceIdRatioBased, so the decision made up front (and sent
        # upstream in the flags) is the one the SDK makes when the spans are built.
        self._bound = round(settings.sample_ratio * (1 << 64))
        self._ids = _PresetIds()
        self.provider = None
        self._tracer = None
        self._api = None
        self._pending_processors: list = []

    # --- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        api, Resource, TracerProvider, IdGenerator, ParentBased, TraceIdRatioBased = _sdk()
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        s = self.settings
        IdGenerator.register(_PresetIds)
        root = TraceIdRatioBased(s.sample_ratio)
        sampler = ParentBased(root) if s.parent_based else root
        attrs = {"service.name": s.service_name, "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
                 "telemetry.sdk.language": "python"}
        try:
            from importlib.metadata import version
            attrs["service.version"] = version("llm-gateway")
        except Exception:  # not installed as a distribution (a source checkout)
            pass
        attrs.update(s.resource_attributes)
        provider = TracerProvider(sampler=sampler, resource=Resource.create(attrs), id_generator=self._ids)
        exporter = self._exporter()
        if exporter is not None:
            b = s.batch
            provider.add_span_processor(BatchSpanProcessor(
                exporter, max_queue_size=b.max_queue_size, schedule_delay_millis=b.schedule_delay_ms,
                max_export_batch_size=min(b.max_export_batch_size, b.max_queue_size),
                export_timeout_millis=b.export_timeout_ms))
        for p in self._pending_processors:
            provider.add_span_processor(p)
        self._pending_processors.clear()
        self._api = api
        self._tracer = provider.get_tracer("llm-gateway")
        self.provider = provider

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
        if self.provider is not None:
            self.provider.add_span_processor(processor)
        else:
            self._pending_processors.append(processor)

    def stop(self) -> None:
        """Flush what is queued (bounded by the export timeout) and stop the export thread."""
        provider, self.provider, self._tracer = self.provider, None, None
        if provider is not None:
            provider.shutdown()

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
        tracer = self._tracer
        if ids is None or not ids.sampled or tracer is None:
            return
        api = self._api
        SpanKind, Status, StatusCode = api.SpanKind, api.Status, api.StatusCode
        s = self.settings
        base_ns = int(ctx.ts_start * 1e9)
        t0 = ctx.t_start
        t_end = ctx.t_end if ctx.t_end is not None else t0

        def ns(t: float) -> int:
            return base_ns + int((t - t0) * 1e9)

        parent = None
        if ids.parent_id is not None:
            state = None
            if ids.tracestate:
                state = api.TraceState.from_header([ids.tracestate])
            remote = api.SpanContext(ids.trace_id, ids.parent_id, is_remote=True,
                                     trace_flags=api.TraceFlags(1 if ids.sampled else 0), trace_state=state)
            parent = api.set_span_in_context(api.NonRecordingSpan(remote))
        endpoint = ctx.endpoint
        operation = genai.operation_name(endpoint)
        status = ctx.status_code or 499
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
        self._ids.preset(ids.trace_id, ids.span_id)
        server = tracer.start_span(f"{method} {route}", context=parent, kind=SpanKind.SERVER, attributes=attrs,
                                   start_time=ns(t0))
        if status >= 500:
            server.set_status(Status(StatusCode.ERROR, (ctx.error_message or "")[:200] or None))
        attempts = ctx.attempt_log or ()
        content_on = server if s.capture_content else None
        if attempts:
            under = api.set_span_in_context(server)
            shared = genai.request_attributes(ctx.body)
            shared["gen_ai.operation.name"] = operation
            runtime = ctx.runtime
            last = len(attempts) - 1
            answered = ctx.t_upstream_headers is not None
            for i, a in enumerate(attempts):
                if not a.span_id:
                    continue
                span = self._attempt_span(tracer, under, ctx, a, i, i == last and answered, shared, runtime, ns,
                                          t_end, SpanKind, Status, StatusCode)
                if i == last and content_on is not None:  # prompts and completions on the inference span
                    self._content(ctx, span)
                    content_on = None
                # The answering attempt lasts until its response was relayed to the end.
                end = t_end if (i == last and answered) or a.t_end is None else a.t_end
                span.end(end_time=ns(max(end, a.t_start)))
        if content_on is not None:  # no upstream call (a cache hit, a rejection)
            self._content(ctx, content_on)
        server.end(end_time=ns(t_end))

    def _attempt_span(self, tracer, under, ctx: RequestContext, a: Attempt, i: int, answering: bool, shared: dict,
                      runtime, ns, t_end: float, SpanKind, Status, StatusCode):
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
        self._ids.preset(None, a.span_id)
        span = tracer.start_span(f"{attrs['gen_ai.operation.name']} {a.model}", context=under,
                                 kind=SpanKind.CLIENT, attributes=attrs, start_time=ns(a.t_start))
        if answering and ctx.stream and ctx.t_first_token is not None:
            span.add_event("gen_ai.first_token", timestamp=ns(ctx.t_first_token))
        if error:
            span.set_status(Status(StatusCode.ERROR))
        return span

    def _content(self, ctx: RequestContext, span) -> None:
        limit = self.settings.content_max_chars
        inputs = genai.input_messages(ctx.endpoint, ctx.body)
        if inputs is not None:
            span.set_attribute("gen_ai.input.messages", genai.as_json(inputs, limit))
        outputs = genai.output_messages(ctx.completion_text, ctx.finish_reason)
        if outputs is not None:
            span.set_attribute("gen_ai.output.messages", genai.as_json(outputs, limit))
