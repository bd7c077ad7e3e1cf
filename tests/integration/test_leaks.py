"""Smaller leaks, through the gateway and a fake upstream: secrets an upstream echoes (whole,
cut or without their prefix in error bodies; in successful answers) never reach a client error,
a row, a span or a dataset export; captured span content is redacted as rows are; responses
name no server software and carry ``nosniff``; malformed HTTP does not flood the log; and a body
that names ``model`` twice is refused."""

from __future__ import annotations

import logging
import socket

import httpx
import openai
import orjson
import pytest
from click.testing import CliRunner
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import FINISHERS
from gateway.cli.commands import main
from gateway.config.telemetry import BodyLogging
from gateway.core.pricing import PriceTable
from gateway.core.tokens import TokenCounter
from gateway.observability import OBSERVABILITY
from gateway.telemetry.record import REQUEST_COLUMN_NAMES, RowBuilder
from tests.support.access import CHAT, KEY_A, access_config
from tests.support.fake_upstream import chat_chunk, sse_event
from tests.support.gateway import gateway_config
from tests.support.telemetry import chdb_client, chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml, wait_for  # noqa: F401

SECRET = "sk-backend-secret"  # the fake backend's key in tests.support.gateway.gateway_config
MSG = [{"role": "user", "content": "hello"}]


def runs(secret: str, n: int = 8) -> list[str]:
    """Every ``n``-character stretch of ``secret``."""
    return [secret[i:i + n] for i in range(len(secret) - n + 1)]


def answer(text: str) -> dict:
    return {**CHAT, "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}]}


def traced(gw) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    gw.app[OBSERVABILITY].tracing.add_processor(SimpleSpanProcessor(exporter))
    return exporter


def span_content(exporter: InMemorySpanExporter, n: int) -> str:
    """The captured content of the last ``n`` requests' spans, as one text."""
    spans = wait_for(lambda: exporter.get_finished_spans() if len(exporter.get_finished_spans()) >= 2 * n else None,
                     what="the spans")
    return "\n".join(str(s.attributes.get(k, "")) for s in spans
                     for k in ("gen_ai.input.messages", "gen_ai.output.messages"))


# --- secrets echoed by an upstream --------------------------------------------------------------
@pytest.mark.parametrize("echo", [
    "Incorrect API key provided: backend-secret",  # no sk- prefix
    "Incorrect API key provided: sk-backend-se...",  # cut
    "key ...kend-secr... is revoked",  # a middle stretch
    f"Incorrect API key provided: {SECRET}",  # whole
], ids=["without prefix", "cut", "middle", "whole"])
@pytest.mark.parametrize("shape", ["openai json", "plain text"])
def test_error_bodies_mask_partial_echoes_of_a_secret(upstream, make_gateway, echo, shape):
    gw = make_gateway(gateway_config(upstream.url, extra="telemetry: {enabled: false}\n"))
    records: list = []
    gw.app[FINISHERS].append(records.append)
    if shape == "plain text":
        upstream.json(echo.encode(), status=401, headers={"Content-Type": "text/plain"})
    else:
        upstream.json({"error": {"message": echo, "type": "invalid_request_error", "code": "invalid_api_key"}},
                      status=401)
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG}, timeout=30)
    assert r.status_code == 401 and "***" in r.text
    assert "Incorrect API key provided" in r.text or "is revoked" in r.text  # the rest of the message stays
    ctx = wait_for(lambda: records[0] if records else None, what="the finished request")
    for stretch in runs(SECRET):
        assert stretch not in r.text and stretch not in ctx.error_message, stretch


@pytest.mark.parametrize("endpoint,body,event", [
    ("chat/completions", {"model": "gpt-test", "messages": MSG, "stream": True},
     sse_event({"error": {"message": "Incorrect API key provided: kend-secret", "type": "invalid_request_error"}})),
    ("responses", {"model": "gpt-test", "input": "hello", "stream": True},
     b"event: error\ndata: " + orjson.dumps({"type": "error", "message": "key backend-secr... revoked"}) + b"\n\n"),
], ids=["chat stream", "responses stream"])
def test_streamed_error_events_mask_partial_echoes_of_a_secret(upstream, make_gateway, endpoint, body, event):
    gw = make_gateway(gateway_config(upstream.url, extra="telemetry: {enabled: false}\n"))
    records: list = []
    gw.app[FINISHERS].append(records.append)
    upstream.sse([sse_event(chat_chunk(role=True)), event])
    r = httpx.post(f"{gw.url}/v1/{endpoint}", json=body, timeout=30)
    assert r.status_code == 200 and "***" in r.text, r.text
    ctx = wait_for(lambda: records[0] if records else None, what="the finished request")
    for stretch in runs(SECRET):
        assert stretch not in r.text and stretch not in ctx.error_message, stretch
    if endpoint == "chat/completions":  # the SDK still raises on the event, with the rest of its message
        assert ctx.error_type == "upstream_stream_error" and "Incorrect API key provided" in ctx.error_message


def test_error_headers_passed_back_mask_a_secret(upstream, make_gateway):
    gw = make_gateway(gateway_config(upstream.url, extra="telemetry: {enabled: false}\n"))
    upstream.json({"error": {"message": "bad key", "type": "invalid_request_error"}}, status=401,
                  headers={"openai-debug": f"key={SECRET}", "x-ratelimit-note": "backend-secr"})
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG}, timeout=30)
    assert r.status_code == 401 and r.headers["openai-debug"] == "key=***" and r.headers["x-ratelimit-note"] == "***"


def test_short_fragments_are_not_masked(upstream, make_gateway):
    gw = make_gateway(gateway_config(upstream.url, extra="telemetry: {enabled: false}\n"))
    upstream.json({"error": {"message": "the secret backend is down", "type": "server_error"}}, status=400)
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG}, timeout=30)
    assert r.json()["error"]["message"] == "the secret backend is down"  # 7-character words of the key stay


def test_stored_success_bodies_mask_secrets_in_rows_spans_and_exports(upstream, make_gateway, tmp_path, tdb):
    tel = telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool", extra="  bodies: {request: true, response: true}\n")
    gw = make_gateway(gateway_config(upstream.url, extra=tel + """
observability:
  tracing: {enabled: true, exporter: none, capture_content: true}
"""))
    exporter = traced(gw)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    upstream.json(answer(f"The key you use is {SECRET}."), times=1)
    got = client.chat.completions.create(model="gpt-test", messages=MSG, extra_headers={"x-request-id": "leak-1"})
    assert got.choices[0].message.content == f"The key you use is {SECRET}."  # the client's bytes are untouched
    upstream.sse([sse_event(chat_chunk(role=True)), sse_event(chat_chunk("key: sk-backend")),
                  sse_event(chat_chunk("-secret")), sse_event(chat_chunk(finish="stop")), b"data: [DONE]\n\n"],
                 times=1)
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="gpt-test", messages=MSG, stream=True, extra_headers={"x-request-id": "leak-2"}) if c.choices)
    assert streamed == f"key: {SECRET}"
    spans = span_content(exporter, 2)
    assert SECRET not in spans and "The key you use is ***." in spans and "key: ***" in spans
    assert httpx.post(f"{gw.url}/admin/telemetry/flush", timeout=30).json()["flushed"]

    def rows():
        c = chdb_client(tdb)
        try:
            got = c.query("SELECT response_body FROM llm_requests WHERE client_request_id IN ('leak-1', 'leak-2')"
                          ).result_rows
            return got if len(got) == 2 else None
        finally:
            c.close()

    bodies = "\n".join(r[0] for r in wait_for(rows, what="the rows"))
    assert SECRET not in bodies and "The key you use is ***." in bodies and "key: ***" in bodies
    result = CliRunner().invoke(main, ["dataset", "export", "--url", gw.url, "--status", "any", "--no-redact"])
    assert result.exit_code == 0, result.output
    assert "The key you use is ***." in result.stdout and "key: ***" in result.stdout
    assert SECRET not in result.stdout


def test_captured_span_content_is_redacted_as_rows_are(upstream, make_gateway):
    gw = make_gateway(gateway_config(upstream.url, extra="""
telemetry:
  enabled: false
  bodies: {request: true, response: true, redact: "plugins.pii:redact_for_log"}
observability:
  tracing: {enabled: true, exporter: none, capture_content: true}
"""))
    exporter = traced(gw)
    records: list = []
    gw.app[FINISHERS].append(records.append)
    upstream.json(answer("Charged card 4111 1111 1111 1111 for jane@example.com"))
    openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "Bill me at jane@example.com"}])
    spans = span_content(exporter, 1)
    row = dict(zip(REQUEST_COLUMN_NAMES, RowBuilder(
        config_hash="h", instance="i", prices=PriceTable(), tokens=TokenCounter(),
        bodies=BodyLogging(request=True, response=True, redact="plugins.pii:redact_for_log")).request_row(
        wait_for(lambda: records[0] if records else None, what="the finished request"))))
    for stored in (row["request_body"] + row["response_body"], spans):
        assert "4111" not in stored and "jane@example.com" not in stored
        assert "[CARD]" in stored and "[EMAIL]" in stored
    outputs = orjson.loads(next(s.attributes["gen_ai.output.messages"] for s in exporter.get_finished_spans()
                                if "gen_ai.output.messages" in s.attributes))
    assert outputs[0]["parts"][0]["content"] == "Charged card [CARD] for [EMAIL]"


# --- response headers ---------------------------------------------------------------------------
def test_no_server_header_and_nosniff_on_every_response(upstream, make_gateway):
    gw = make_gateway(gateway_config(upstream.url, extra="telemetry: {enabled: false}\n"))
    upstream.json(CHAT, headers={"Server": "uvicorn"})
    responses = [
        httpx.get(f"{gw.url}/healthz"), httpx.get(f"{gw.url}/readyz"), httpx.get(f"{gw.url}/v1/models"),
        httpx.get(f"{gw.url}/nowhere"), httpx.get(f"{gw.url}/admin/config"),
        httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG}),
        httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "nope", "messages": MSG}),
        httpx.post(f"{gw.url}/v1/chat/completions", content=b"{not json",
                   headers={"Content-Type": "application/json"}),
    ]
    upstream.sse([sse_event(chat_chunk("hi")), b"data: [DONE]\n\n"], times=1)
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions",
                      json={"model": "gpt-test", "messages": MSG, "stream": True}) as streamed:
        streamed.read()
        responses.append(streamed)
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 200, 200, 404, 400, 200]
    for r in responses:
        assert "server" not in r.headers, (r.url, r.headers["server"])
        assert r.headers["x-content-type-options"] == "nosniff", r.url


# --- malformed HTTP ------------------------------------------------------------------------------
MALFORMED = {
    "unknown method": b"BR\x01W /v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
    "oversized header": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    "content-length with chunked": (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "bad header name": b"GET /v1/models HTTP/1.1\r\nHost: x\r\nBad Header\x01: y\r\n\r\n",
    "tls on the plain port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,
}


def send_raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_malformed_http_is_counted_not_logged_per_request(gateway, caplog):
    caplog.set_level(logging.DEBUG)
    port = int(gateway.url.rsplit(":", 1)[1])
    for _ in range(10):
        for name, data in MALFORMED.items():
            answer_ = send_raw(port, data)
            assert answer_.startswith(b"HTTP/1.") and b" 400 " in answer_.split(b"\r\n", 1)[0], (name, answer_[:80])
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200  # still serving
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(noisy) <= 2, [r.getMessage() for r in noisy]
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.INFO)
    assert "malformed HTTP request" in noisy[0].getMessage()


def test_unreadable_bodies_get_400_without_a_traceback(upstream, make_gateway, caplog):
    """A body whose Content-Encoding (or chunked framing) is broken fails only when a handler
    reads it: an unauthenticated client must get a 400, not a 500 with a traceback in the log."""
    admin = "adm-unreadable-12345"
    gw = make_gateway(gateway_config(upstream.url, extra=f"server: {{admin_key: {admin}}}\n"))
    caplog.set_level(logging.DEBUG)
    garbage = b"this is not gzip"
    for path, headers in [("/v1/chat/completions", {"Content-Type": "application/json"}),
                          ("/v1/feedback", {"Content-Type": "application/json"}),
                          ("/admin/query", {"Content-Type": "application/json", "Authorization": f"Bearer {admin}"}),
                          ("/dashboard/login", {"Content-Type": "application/x-www-form-urlencoded"})]:
        for _ in range(3):
            r = httpx.post(f"{gw.url}{path}", content=garbage, headers={**headers, "Content-Encoding": "gzip"},
                           timeout=30)
            assert r.status_code == 400, (path, r.status_code, r.text)
            if path != "/dashboard/login":
                assert set(r.json()["error"]) == {"message", "type", "param", "code"}, r.text
    for content_type, body in [("multipart/form-data", b"x"), ("multipart/form-data; boundary=b", b"--b\r\nbroken"),
                               ("application/x-www-form-urlencoded; charset=no-such-charset", b"key=x")]:
        r = httpx.post(f"{gw.url}/dashboard/login", content=body, headers={"Content-Type": content_type}, timeout=30)
        assert r.status_code == 400, (content_type, r.status_code, r.text)
    assert not upstream.received
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], \
        [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# --- duplicate keys ------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [
    b'{"model": "mock-gpt", "model": "same-name", "messages": [{"role": "user", "content": "hi"}]}',
    b'{"model": "same-name", "messages": [{"role": "user", "content": "hi"}], "model": "same-name"}',
    b'{"model": "mock-gpt", "mo\\u0064el": "same-name", "messages": [{"role": "user", "content": "hi"}]}',
    b'{"\\u006dodel": "mock-gpt", "model": "same-name", "messages": [{"role": "user", "content": "hi"}]}',
    # parsers that match keys regardless of case (Go's encoding/json) read these as "model" too
    b'{"model": "same-name", "messages": [{"role": "user", "content": "hi"}], "Model": "mock-gpt"}',
    b'{"MODEL": "mock-gpt", "model": "same-name", "messages": [{"role": "user", "content": "hi"}]}',
    b'{"model": "same-name", "\\u004dodel": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]}',
], ids=["two values", "same value twice", "escaped second key", "escaped first key", "capitalised",
        "upper case first", "escaped capital"])
def test_a_body_naming_model_twice_is_refused(upstream, make_gateway, raw):
    gw = make_gateway(access_config(upstream.url))  # team-a may use same-*, not mock-gpt
    upstream.json(CHAT)
    r = httpx.post(f"{gw.url}/v1/chat/completions", content=raw, timeout=30,
                   headers={"Authorization": f"Bearer {KEY_A}", "Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == {"message": "The request body names `model` more than once.",
                                 "type": "invalid_request_error", "param": "model", "code": "duplicate_key"}
    assert not upstream.received


@pytest.mark.parametrize("raw,field", [
    (b'{"model": "same-name", "stream": false, "Stream": true, "messages": [{"role": "user", "content": "hi"}]}',
     "Stream"),
    (b'{"model": "same-name", "messages": [{"role": "user", "content": "hi"}], '
     b'"Messages": [{"role": "user", "content": "what a blocklist never read"}]}', "Messages"),
    (b'{"model": "same-name", "messages": [{"role": "user", "content": "hi"}], "MAX_TOKENS": 100000}', "MAX_TOKENS"),
], ids=["stream", "messages", "max_tokens"])
def test_case_variants_of_fields_the_gateway_reads_are_refused(upstream, make_gateway, raw, field):
    """Case-insensitive parsers (Go's) would read these instead of the fields the gateway
    metered, routed and scanned."""
    gw = make_gateway(access_config(upstream.url))
    upstream.json(CHAT)
    r = httpx.post(f"{gw.url}/v1/chat/completions", content=raw, timeout=30,
                   headers={"Authorization": f"Bearer {KEY_A}", "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "duplicate_key", r.text
    assert r.json()["error"]["param"] == field and f"`{field.lower()}`" in r.json()["error"]["message"]
    assert not upstream.received
    ok = raw.replace(f'"{field}"'.encode(), b'"x_extra"')  # unknown fields of any case still pass through
    assert httpx.post(f"{gw.url}/v1/chat/completions", content=ok, timeout=30, headers={
        "Authorization": f"Bearer {KEY_A}", "Content-Type": "application/json"}).status_code == 200


def test_model_keys_below_the_top_level_are_fine(upstream, make_gateway):
    gw = make_gateway(access_config(upstream.url))
    upstream.json(CHAT)
    raw = (b'{"model": "same-name", "messages": [{"role": "user", "content": "say \\"model\\" twice: \\"model\\""}],'
           b' "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object",'
           b' "properties": {"model": {"type": "string"}}, "required": ["model"]}}}]}')
    r = httpx.post(f"{gw.url}/v1/chat/completions", content=raw, timeout=30,
                   headers={"Authorization": f"Bearer {KEY_A}", "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert upstream.last.body == raw  # forwarded as sent
