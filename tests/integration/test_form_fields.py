"""A form's text fields are read only as far as routing needs: ``model`` (whole, or refused when
longer than 64 KiB) and the short fields before the first file. A long text field (a prompt of
tens of megabytes) is streamed on like a file, never held whole: the gateway's memory stays
bounded by what it reads, not by the form. The form still arrives byte-identical, and a second
``model`` hidden after the long field is still refused.

The memory test runs ``llm-gateway serve`` as a real subprocess and reads its peak resident
memory (``VmHWM`` in ``/proc/PID/status``) before and after the upload.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from gateway.proxy.multipart import read_form
from gateway.proxy.server import BackgroundServer
from tests.support.gateway_process import Gateway
from tests.support.polling import wait_for

KEY = "sk-gw-form-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}", "Content-Type": "multipart/form-data; boundary=B"}
AUDIO = os.urandom(50_000)


def _config(url: str, extra: str = "") -> str:
    return f"""
telemetry: {{enabled: false}}
backends:
  openai: {{type: openai, base_url: "{url}", api_key: sk-backend-secret}}
models:
  whisper: {{targets: [{{backend: openai, model: whisper-1}}]}}
passthrough:
  - {{path: "files*", backend: openai}}
keys:
  - {{tenant: t, sha256: {hashlib.sha256(KEY.encode()).hexdigest()}, endpoints: ["*"]}}
{extra}"""


def _field(name: str, value: bytes) -> bytes:
    return b'--B\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (name.encode(), value)


def _file() -> bytes:
    return b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + AUDIO + b"\r\n"


def _pieces(body: bytes, size: int = 1024 * 1024) -> Iterator[bytes]:
    """The body as a client streams it (chunked, no Content-Length)."""
    for i in range(0, len(body), size):
        yield body[i:i + size]


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory so far, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_long_text_field_is_streamed_on_not_held(tmp_path, upstream):
    """``model``, a 48 MB ``prompt``, then a small file, sent as a stream: the backend gets the
    form byte-identical (the target's model name in it) and the gateway's peak memory grows by
    far less than the field (held whole, it would grow by at least the field's size)."""
    upstream.json({"text": "ok"})
    config = tmp_path / "gateway.yaml"
    config.write_text(_config(upstream.url))
    gw = Gateway(config, tmp_path / "data", tmp_path / "gw.log")
    try:
        url = f"{gw.url}/v1/audio/transcriptions"
        small = _field("model", b"whisper") + _field("prompt", b"p" * 200_000) + _file() + b"--B--\r\n"
        r = httpx.post(url, content=_pieces(small), headers=AUTH, timeout=60)  # the first request's own allocations
        assert r.status_code == 200, r.text
        before = _peak_rss(gw.proc.pid)
        prompt = os.urandom(24 * 1024 * 1024).hex().encode()  # 48 MB of text, no delimiter in it
        body = _field("model", b"whisper") + _field("prompt", prompt) + _file() + _field("language", b"en") \
            + b"--B--\r\n"
        r = httpx.post(url, content=_pieces(body), headers=AUTH, timeout=120)
        assert r.status_code == 200, r.text
        growth = _peak_rss(gw.proc.pid) - before
    finally:
        gw.stop()
    wait_for(lambda: len(upstream.received) == 2, what="both uploads at the backend")
    got = upstream.last.body
    assert got == body.replace(b"\r\n\r\nwhisper\r\n", b"\r\n\r\nwhisper-1\r\n", 1)
    assert growth < len(prompt) // 4, f"the gateway's peak memory grew by {growth} bytes"


def test_a_model_field_over_64_kib_is_refused(make_gateway, upstream):
    gw = make_gateway(_config(upstream.url))
    upstream.json({"text": "ok"})
    for path in ("audio/transcriptions", "files"):  # routed by it, or by ``passthrough:``
        for body in (_field("model", b"w" * 100_000) + _file() + b"--B--\r\n",
                     _field("language", b"en") + _field("model", b"w" * 100_000) + b"--B--\r\n"):
            for content in (body, _pieces(body, 8192)):  # read in one piece or many
                r = httpx.post(f"{gw.url}/v1/{path}", content=content, headers=AUTH, timeout=30)
                assert r.status_code == 400, r.text
                assert r.json()["error"]["param"] == "model", r.text
                assert r.json()["error"]["code"] == "string_above_max_length", r.text
    assert not upstream.received
    ok = _field("model", b"whisper") + _field("prompt", b"x" * 100_000) + _file() + b"--B--\r\n"
    r = httpx.post(f"{gw.url}/v1/audio/transcriptions", content=ok, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text  # a long field that is not ``model`` is only passed on


@pytest.mark.parametrize("path", ["audio/transcriptions", "files"])
def test_a_model_after_a_long_field_is_still_seen(make_gateway, upstream, path):
    """The long field is not read, but what follows it is watched as it streams on: a (second)
    ``model`` there is refused before it reaches a backend, as after a file."""
    gw = make_gateway(_config(upstream.url))
    upstream.json({"text": "ok"})
    first = _field("model", b"whisper") if path == "audio/transcriptions" else b""
    body = first + _field("prompt", b"x" * 3_000_000) + _field("model", b"gpt-4o-transcribe") + _file() \
        + b"--B--\r\n"
    for content in (body, _pieces(body, 65536)):
        r = httpx.post(f"{gw.url}/v1/{path}", content=content, headers=AUTH, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["code"] == "duplicate_key", r.text
    assert all(b"gpt-4o-transcribe" not in x.body for x in upstream.received)


@pytest.mark.parametrize("fields", [[("prompt", b"x" * 3_000_000)], [(f"f{i}", b"y" * 50_000) for i in range(60)]])
def test_what_is_read_before_sending_on_is_bounded(fields):
    """Once ``model`` is known, reading stops at a long field, or (many short fields) once about
    a megabyte is read: the rest of the form goes on unread, all of it."""
    seen: dict = {}

    async def handler(request: web.Request) -> web.Response:
        form = await read_form(request, 64 * 1024 * 1024)
        seen.update(fields=form.fields, head=len(form.head), whole=form.whole)
        body, _ = form.body("whisper")
        seen["sent"] = body if isinstance(body, bytes) else b"".join([chunk async for chunk in body])
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/up", handler)
    body = _field("model", b"whisper") + b"".join(_field(n, v) for n, v in fields) + _file() + b"--B--\r\n"
    with BackgroundServer(app) as server:
        r = httpx.post(f"{server.url}/up", content=_pieces(body, 65536), headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    assert seen["sent"] == body and seen["whole"] is False
    assert seen["head"] < 2 * 1024 * 1024, seen["head"]  # not the 3 MB of fields
    assert seen["fields"]["model"] == "whisper" and "prompt" not in seen["fields"]
    assert len(seen["fields"]) < len(fields) + 1  # the fields past the stop are not read
