"""OpenTelemetry traces: spans, names, GenAI attributes, parent/child links, W3C propagation
both ways (client → gateway → upstream), the row's trace_id, sampling, content capture, and
export over real OTLP/HTTP to a receiver on loopback."""

from __future__ import annotations

import gzip
import time

import httpx
import openai
import orjson
import pytest
from aiohttp import web
from openai import OpenAI
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.app import FINISHERS, build_app
from gateway.config import parse_config
from gateway.config.telemetry import TelemetrySettings
from gateway.core.pricing import PriceTable
from gateway.core.tokens import TokenCounter
from gateway.observability import OBSERVABILITY
from gateway.observability.tracing import parse_traceparent
from gateway.proxy.server import BackgroundServer, free_port
from gateway.telemetry.record import REQUEST_COLUMN_NAMES, RowBuilder
from tests.support.fake_upstream import chat_chunk, sse_event
from tests.support.gateway import gateway_config
from tests.support.polling import wait_for

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
CHAT = {"id": "chatcmpl-42", "object": "chat.completion", "created": 1, "model": "up-model-2024",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14,
                  "prompt_tokens_details": {"cached_tokens": 4}}}
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]


class Traced:
    """A gateway whose spans land in an in-memory exporter; ``records`` are the finished contexts."""

    def __init__(self, server: BackgroundServer, exporter: InMemorySpanExporter, records: list):
        self.server = server
        self.exporter = exporter
        self.records = records
        self.url = server.url
        self.client = OpenAI(base_url=f"{server.url}/v1", api_key="sk-client-key", max_retries=0)

    def spans(self, n: int):
        """The finished spans, once there are ``n`` (and exactly ``n``)."""
        wait_for(lambda: len(self.exporter.get_finished_spans()) >= n, what=f"{n} spans")
        spans = list(self.exporter.get_finished_spans())
        assert len(spans) == n, [s.name for s in spans]
        return spans

    def record(self, i: int = -1):
        wait_for(lambda: self.records, what="a finished request")
        return self.records[i]


@pytest.fixture
def traced(make_gateway):
    def factory(upstream_url: str, tracing: str = "", extra: str = "", backend_extra: str = "") -> Traced:
        text = gateway_config(upstream_url, extra=f"""
telemetry: {{enabled: false}}
routing: {{retry: {{attempts: 2, base_backoff_ms: 1, max_backoff_ms: 1}}}}
observability:
  tracing: {{enabled: true, exporter: none{', ' + tracing if tracing else ''}}}
{extra}""", backend_extra=backend_extra)
        srv = make_gateway(text)
        exporter = InMemorySpanExporter()
        srv.app[OBSERVABILITY].tracing.add_processor(SimpleSpanProcessor(exporter))
        records: list = []
        srv.app[FINISHERS].append(records.append)
        return Traced(srv, exporter, records)

    return factory


def by_kind(spans, kind):
    return [s for s in spans if s.kind == kind]


def row_trace_id(ctx) -> str:
    builder = RowBuilder(config_hash="h", instance="i", prices=PriceTable(), tokens=TokenCounter(),
                         bodies=TelemetrySettings().bodies)
    return dict(zip(REQUEST_COLUMN_NAMES, builder.request_row(ctx)))["trace_id"]


def test_plain_request_continues_the_client_trace_and_carries_it_upstream(traced, upstream):
    gw = traced(upstream.url)
    upstream.json(CHAT)
    raw = gw.client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=MESSAGES, max_tokens=50, temperature=0.2, top_p=0.9, seed=7, n=1,
        extra_headers={"traceparent": TRACEPARENT, "tracestate": "vendor=abc"})
    assert raw.parse().choices[0].message.content == "Hello there"
    server_span, = by_kind(gw.spans(2), SpanKind.SERVER)
    client_span, = by_kind(gw.spans(2), SpanKind.CLIENT)
    # One trace: the client's span → SERVER → CLIENT.
    assert f"{server_span.context.trace_id:032x}" == f"{client_span.context.trace_id:032x}" == CLIENT_TRACE
    assert f"{server_span.parent.span_id:016x}" == CLIENT_SPAN and server_span.parent.is_remote
    assert client_span.parent.span_id == server_span.context.span_id
    # The upstream got the CLIENT span's id as its parent, and the tracestate.
    sent = upstream.last.headers
    trace_id, parent_id, flags = parse_traceparent(sent["traceparent"])
    assert (f"{trace_id:032x}", parent_id, flags) == (CLIENT_TRACE, client_span.context.span_id, 1)
    assert sent["tracestate"] == "vendor=abc"
    # The client learns the SERVER span in traceresponse.
    assert raw.headers["traceresponse"] == f"00-{CLIENT_TRACE}-{server_span.context.span_id:016x}-01"
    # Names and attributes (GenAI conventions + gateway attributes).
    assert server_span.name == "POST /v1/chat/completions"
    assert client_span.name == "chat up-model"
    s, c = dict(server_span.attributes), dict(client_span.attributes)
    assert s["http.request.method"] == "POST" and s["http.response.status_code"] == 200
    assert s["gen_ai.operation.name"] == "chat" and s["gen_ai.request.model"] == "gpt-test"
    assert s["llm_gateway.route_rule"] == "default" and s["llm_gateway.cache_status"] == "none"  # no cache configured
    assert s["llm_gateway.request_id"] == raw.headers["x-request-id"]
    port = int(upstream.url.split(":")[2].split("/")[0])
    assert c == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "up-model",
        "gen_ai.request.max_tokens": 50, "gen_ai.request.temperature": 0.2, "gen_ai.request.top_p": 0.9,
        "gen_ai.request.seed": 7, "gen_ai.request.choice.count": 1,
        "gen_ai.response.model": "up-model-2024", "gen_ai.response.id": "chatcmpl-42",
        "gen_ai.response.finish_reasons": ("stop",), "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 3, "gen_ai.usage.cache_read.input_tokens": 4,
        "server.address": "127.0.0.1", "server.port": port, "http.response.status_code": 200,
        "llm_gateway.backend": "fake", "llm_gateway.attempt": 1,
    }
    assert "error.type" not in s and client_span.status.status_code == StatusCode.UNSET
    # Times: the CLIENT span lies within the SERVER span.
    assert server_span.start_time <= client_span.start_time <= client_span.end_time <= server_span.end_time
    assert server_span.end_time - server_span.start_time < 5e9
    # The ClickHouse row holds the same trace id; messages are not captured by default.
    assert row_trace_id(gw.record()) == CLIENT_TRACE
    assert "gen_ai.input.messages" not in c and "gen_ai.output.messages" not in c


def test_streamed_request(traced, upstream):
    gw = traced(upstream.url)
    upstream.sse([sse_event(chat_chunk(role=True)), sse_event(chat_chunk("Hel")), sse_event(chat_chunk("lo")),
                  sse_event(chat_chunk(finish="stop")),
                  sse_event(chat_chunk(choices=False, usage={"prompt_tokens": 5, "completion_tokens": 2,
                                                             "total_tokens": 7})),
                  b"data: [DONE]\n\n"], chunk_delay_s=0.01)
    text = "".join(ch.choices[0].delta.content or "" for ch in gw.client.chat.completions.create(
        model="gpt-test", messages=MESSAGES, stream=True) if ch.choices)
    assert text == "Hello"
    spans = gw.spans(2)
    server_span, = by_kind(spans, SpanKind.SERVER)
    client_span, = by_kind(spans, SpanKind.CLIENT)
    c = dict(client_span.attributes)
    assert c["gen_ai.request.stream"] is True and c["gen_ai.response.id"] == "chatcmpl-1"
    assert c["gen_ai.usage.input_tokens"] == 5 and c["gen_ai.usage.output_tokens"] == 2
    assert c["gen_ai.response.finish_reasons"] == ("stop",) and c["gen_ai.response.model"] == "up-model"
    assert c["llm_gateway.ttft_ms"] > 0
    first, = [e for e in client_span.events if e.name == "gen_ai.first_token"]
    assert client_span.start_time < first.timestamp <= client_span.end_time
    # The answering attempt lasts until the stream ended (the last chunk came ≥ 40 ms later).
    assert client_span.end_time - client_span.start_time >= 40e6
    # No client traceparent: a new trace, the same in the upstream's header and the row.
    sent_trace = parse_traceparent(upstream.last.headers["traceparent"])[0]
    assert sent_trace == server_span.context.trace_id and server_span.parent is None
    assert row_trace_id(gw.record()) == f"{sent_trace:032x}"


def test_retried_request_has_a_client_span_per_attempt(traced, upstream):
    gw = traced(upstream.url)
    upstream.json({"error": {"message": "overloaded", "type": "server_error"}}, status=500, times=1)
    upstream.json(CHAT)
    gw.client.chat.completions.create(model="gpt-test", messages=MESSAGES, extra_headers={"traceparent": TRACEPARENT})
    spans = gw.spans(3)
    server_span, = by_kind(spans, SpanKind.SERVER)
    first, second = sorted(by_kind(spans, SpanKind.CLIENT), key=lambda s: s.start_time)
    assert first.parent.span_id == second.parent.span_id == server_span.context.span_id
    assert first.end_time <= second.start_time
    a, b = dict(first.attributes), dict(second.attributes)
    assert a["error.type"] == "5xx" and a["http.response.status_code"] == 500 and a["llm_gateway.attempt"] == 1
    assert first.status.status_code == StatusCode.ERROR
    assert "gen_ai.usage.input_tokens" not in a  # the failed attempt produced nothing
    assert "error.type" not in b and b["llm_gateway.attempt"] == 2 and b["gen_ai.usage.output_tokens"] == 3
    assert server_span.attributes["llm_gateway.attempts"] == 2
    assert server_span.status.status_code == StatusCode.UNSET
    # Each upstream request named its own attempt's span.
    sent = [parse_traceparent(r.headers["traceparent"])[1] for r in upstream.received[-2:]]
    assert sent == [first.context.span_id, second.context.span_id]
    ctx = gw.record()
    assert [at.span_id for at in ctx.attempt_log] == sent


def test_failed_request_marks_the_spans_as_errors(traced, upstream):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    gw = traced(upstream.url, extra="routes: [{name: to-dead, match: {model: gpt-test}, "
                                    "targets: [{backend: dead, model: gone}]}]",
                backend_extra=f"""
  dead:
    type: openai
    base_url: {dead}
""")
    with pytest.raises(openai.APIStatusError) as info:
        gw.client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    assert info.value.status_code == 502
    spans = gw.spans(3)
    server_span, = by_kind(spans, SpanKind.SERVER)
    clients = by_kind(spans, SpanKind.CLIENT)
    assert len(clients) == 2 and all(dict(c.attributes)["error.type"] == "connect" for c in clients)
    assert all(c.status.status_code == StatusCode.ERROR for c in clients)
    assert all(c.name == "chat gone" and "http.response.status_code" not in c.attributes for c in clients)
    s = dict(server_span.attributes)
    assert s["http.response.status_code"] == 502 and s["error.type"] == "upstream_unreachable"
    assert s["llm_gateway.route_rule"] == "to-dead"
    assert server_span.status.status_code == StatusCode.ERROR


def test_caller_error_and_gateway_rejections(traced, upstream):
    gw = traced(upstream.url)
    upstream.json({"error": {"message": "bad param", "type": "invalid_request_error"}}, status=400)
    with pytest.raises(openai.BadRequestError):
        gw.client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError):  # unknown model: no upstream call, a SERVER span only
        gw.client.chat.completions.create(model="nope", messages=MESSAGES)
    spans = gw.spans(3)
    client_span, = by_kind(spans, SpanKind.CLIENT)
    assert client_span.attributes["error.type"] == "400" and client_span.status.status_code == StatusCode.ERROR
    servers = sorted(by_kind(spans, SpanKind.SERVER), key=lambda s: s.start_time)
    assert [s.attributes["http.response.status_code"] for s in servers] == [400, 404]
    assert all(s.status.status_code == StatusCode.UNSET for s in servers)  # 4xx is the caller's doing
    assert servers[1].attributes["error.type"] == "model_not_found"


def test_sampling_ratio_and_parent_decision(traced, upstream):
    gw = traced(upstream.url, tracing="sample_ratio: 0")
    upstream.json(CHAT)
    gw.client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    unsampled = upstream.last.headers["traceparent"]
    assert unsampled.endswith("-00")  # propagated, not sampled
    assert row_trace_id(gw.record()) == unsampled.split("-")[1]
    # A client that sampled its trace wins (parent-based).
    gw.client.chat.completions.create(model="gpt-test", messages=MESSAGES, extra_headers={"traceparent": TRACEPARENT})
    assert upstream.last.headers["traceparent"].endswith("-01")
    spans = gw.spans(2)
    assert {f"{s.context.trace_id:032x}" for s in spans} == {CLIENT_TRACE}
    # A client that did not sample: neither do we.
    finished = len(gw.records)
    gw.client.chat.completions.create(model="gpt-test", messages=MESSAGES,
                                      extra_headers={"traceparent": TRACEPARENT[:-2] + "00"})
    # the request has finished (the records finisher runs after tracing's): still no new span
    wait_for(lambda: len(gw.records) > finished, what="the unsampled request to finish")
    assert len(gw.exporter.get_finished_spans()) == 2


def test_invalid_traceparent_starts_a_new_trace(traced, upstream):
    gw = traced(upstream.url)
    upstream.json(CHAT)
    for bad in ("00-" + "0" * 32 + "-b7ad6b7169203331-01", "ff-" + CLIENT_TRACE + "-b7ad6b7169203331-01",
                "garbage", "00-" + CLIENT_TRACE + "-b7ad6b7169203331-01-extra"):
        gw.client.chat.completions.create(model="gpt-test", messages=MESSAGES, extra_headers={"traceparent": bad})
        sent = parse_traceparent(upstream.last.headers["traceparent"])
        assert sent is not None and f"{sent[0]:032x}" != CLIENT_TRACE
    servers = by_kind(gw.spans(8), SpanKind.SERVER)
    assert all(s.parent is None for s in servers)


def test_traceparent_parsing():
    assert parse_traceparent(TRACEPARENT) == (int(CLIENT_TRACE, 16), int(CLIENT_SPAN, 16), 1)
    assert parse_traceparent(TRACEPARENT.upper()) is not None
    assert parse_traceparent("01-" + CLIENT_TRACE + "-" + CLIENT_SPAN + "-01-future") is not None
    assert parse_traceparent("00-" + CLIENT_TRACE + "-" + "0" * 16 + "-01") is None


def test_content_captured_only_when_enabled(traced, upstream):
    gw = traced(upstream.url, tracing="capture_content: true, content_max_chars: 1000")
    upstream.json(CHAT)
    gw.client.chat.completions.create(model="gpt-test", messages=MESSAGES)
    client_span, = by_kind(gw.spans(2), SpanKind.CLIENT)
    inputs = orjson.loads(client_span.attributes["gen_ai.input.messages"])
    outputs = orjson.loads(client_span.attributes["gen_ai.output.messages"])
    assert inputs == [{"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                      {"role": "user", "parts": [{"type": "text", "content": "Say hello"}]}]
    assert outputs == [{"role": "assistant", "parts": [{"type": "text", "content": "Hello there"}],
                        "finish_reason": "stop"}]


def test_tracing_off_sends_no_traceparent_and_keeps_the_clients_trace_id_in_the_row(make_gateway, upstream):
    srv = make_gateway(gateway_config(upstream.url, extra="telemetry: {enabled: false}"))
    records: list = []
    srv.app[FINISHERS].append(records.append)
    upstream.json(CHAT)
    r = httpx.post(f"{srv.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MESSAGES},
                   headers={"traceparent": TRACEPARENT})
    assert r.status_code == 200 and "traceresponse" not in r.headers
    assert "traceparent" not in {k.lower() for k in upstream.last.headers}
    assert srv.app[OBSERVABILITY].tracing is None
    wait_for(lambda: records, what="a finished request")
    assert records[0].trace is None and records[0].attempt_log[0].span_id == 0
    assert row_trace_id(records[0]) == CLIENT_TRACE


# --- real OTLP/HTTP export ------------------------------------------------------------------------
class OTLPReceiver:
    """A minimal OTLP/HTTP traces endpoint on loopback: decodes each protobuf export."""

    def __init__(self):
        self.requests: list[ExportTraceServiceRequest] = []
        self.headers: list[dict] = []
        self.encodings: list[str] = []
        app = web.Application()
        app.router.add_post("/v1/traces", self._handle)
        self._server = BackgroundServer(app)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.encodings.append(request.headers.get("Content-Encoding", ""))
        if body[:2] == b"\x1f\x8b":  # aiohttp usually decodes it already
            body = gzip.decompress(body)
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(body)
        self.requests.append(msg)
        self.headers.append(dict(request.headers))
        return web.Response(body=b"", content_type="application/x-protobuf")

    def spans(self):
        out = []
        for req in self.requests:
            for rs in req.resource_spans:
                resource = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        out.append((resource, span))
        return out

    def __enter__(self):
        self._server.__enter__()
        return self

    def __exit__(self, *exc):
        self._server.__exit__(*exc)


def test_spans_exported_over_otlp_http(upstream):
    upstream.json(CHAT)
    with OTLPReceiver() as receiver:
        cfg = parse_config(gateway_config(upstream.url, extra=f"""
telemetry: {{enabled: false}}
observability:
  tracing:
    enabled: true
    endpoint: {receiver._server.url}/v1/traces
    headers: {{x-otlp-key: otlp-secret}}
    compression: gzip
    service_name: gw-under-test
    resource_attributes: {{deployment.environment: test}}
    batch: {{schedule_delay_ms: 50}}
"""))
        with BackgroundServer(build_app(cfg)) as srv:
            client = OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
            client.chat.completions.create(model="gpt-test", messages=MESSAGES,
                                           extra_headers={"traceparent": TRACEPARENT})
            # exported by the batch processor's thread, not at shutdown
            wait_for(lambda: len(receiver.spans()) >= 2, what="2 spans at the OTLP receiver")
        spans = receiver.spans()
    assert len(spans) == 2
    assert receiver.headers[0]["x-otlp-key"] == "otlp-secret" and receiver.encodings[0] == "gzip"
    assert receiver.headers[0]["Content-Type"] == "application/x-protobuf"
    resource = spans[0][0]
    assert resource["service.name"] == "gw-under-test" and resource["deployment.environment"] == "test"
    named = {s.name: s for _, s in spans}
    server, client_span = named["POST /v1/chat/completions"], named["chat up-model"]
    assert server.trace_id.hex() == client_span.trace_id.hex() == CLIENT_TRACE
    assert server.parent_span_id.hex() == CLIENT_SPAN and client_span.parent_span_id == server.span_id
    assert server.kind == 2 and client_span.kind == 3  # SERVER, CLIENT in OTLP's enum
    attrs = {a.key: a.value for a in client_span.attributes}
    assert attrs["gen_ai.usage.input_tokens"].int_value == 11
    assert attrs["gen_ai.provider.name"].string_value == "openai"
    assert upstream.last.headers["traceparent"] == f"00-{CLIENT_TRACE}-{client_span.span_id.hex()}-01"


def test_exporting_never_blocks_requests_when_the_collector_is_down(upstream):
    upstream.json(CHAT)
    dead = free_port()
    cfg = parse_config(gateway_config(upstream.url, extra=f"""
telemetry: {{enabled: false}}
observability:
  tracing: {{enabled: true, endpoint: "http://127.0.0.1:{dead}/v1/traces", timeout_s: 1,
            batch: {{schedule_delay_ms: 10, max_queue_size: 8, max_export_batch_size: 4}}}}
"""))
    with BackgroundServer(build_app(cfg)) as srv:
        client = OpenAI(base_url=f"{srv.url}/v1", api_key="x", max_retries=0)
        start = time.perf_counter()
        for _ in range(30):
            client.chat.completions.create(model="gpt-test", messages=MESSAGES)
        elapsed = time.perf_counter() - start
    assert elapsed < 10  # 30 requests; exports fail on their own thread (and spans are dropped when full)
