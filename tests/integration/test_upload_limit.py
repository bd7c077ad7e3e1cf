"""Two body limits: ``server.body_limit_bytes`` for JSON (read whole), ``server.upload_limit_bytes``
for multipart uploads (streamed on as they arrive). Past either: 413 in OpenAI's error shape;
an upload that runs past its limit while it streams drops the backend's connection."""

from __future__ import annotations

import hashlib
import os

import httpx
import openai
from aiohttp import web

from gateway.proxy.server import BackgroundServer
from tests.support.polling import wait_for

KEY = "sk-gw-upload-limit-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
FORM = {**AUTH, "Content-Type": "multipart/form-data; boundary=B"}


def _config(url: str) -> str:
    return f"""
telemetry: {{enabled: false}}
server: {{body_limit_bytes: 4096, upload_limit_bytes: 200000}}
backends:
  openai: {{type: openai, base_url: "{url}", api_key: sk-backend-secret}}
models:
  whisper: {{targets: [{{backend: openai, model: whisper-1}}]}}
  gpt-4o: {{targets: [{{backend: openai}}]}}
keys:
  - {{tenant: all, sha256: {hashlib.sha256(KEY.encode()).hexdigest()}, endpoints: ["*"]}}
"""


def _form(audio: bytes) -> bytes:
    return (b'--B\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper\r\n--B\r\nContent-Disposition: '
            b'form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n' + audio + b"\r\n--B--\r\n")


def _too_large(r: httpx.Response) -> None:
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "payload_too_large")
    assert set(error) == {"message", "type", "param", "code"}


def test_json_and_uploads_each_have_their_own_limit(make_gateway):
    seen: list[dict] = []

    async def backend(request: web.Request) -> web.Response:
        got = {"path": request.path, "bytes": 0, "error": None}
        seen.append(got)
        try:
            async for chunk in request.content.iter_any():
                got["bytes"] += len(chunk)
        except BaseException as exc:  # the gateway dropped the connection mid-upload (or the handler cancelled)
            got["error"] = type(exc).__name__
            raise
        got["done"] = True
        if request.path.endswith("chat/completions"):
            return web.json_response({"id": "c", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                                   "finish_reason": "stop"}]})
        return web.json_response({"text": "ok"})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/{tail:.*}", backend)
    with BackgroundServer(app) as server:
        gw = make_gateway(_config(f"{server.url}/v1"))
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY, max_retries=0)

        # An upload larger than the JSON limit, within the upload limit: through, whole.
        got = client.audio.transcriptions.create(file=("a.wav", os.urandom(100_000), "audio/wav"), model="whisper")
        assert got.text == "ok" and seen[-1]["bytes"] > 100_000 and seen[-1]["error"] is None

        # JSON over its limit: refused before anything is sent.
        message = [{"role": "user", "content": "x" * 5000}]
        _too_large(httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-4o", "messages": message},
                              headers=AUTH, timeout=30))
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert len(seen) == 2  # the JSON limit still lets small JSON through

        # An upload whose Content-Length is over the limit: refused before anything is sent.
        _too_large(httpx.post(f"{gw.url}/v1/audio/transcriptions", content=_form(os.urandom(300_000)),
                              headers=FORM, timeout=30))
        assert len(seen) == 2

        # A chunked upload (no Content-Length) that runs past the limit while it streams on: the
        # backend receives its first part while the client is still sending (nothing is held
        # whole), then sees its connection drop.
        body = _form(os.urandom(600_000))

        def pieces():
            yield body[:150_000]
            seen_first = wait_for(lambda: len(seen) == 3 and seen[2]["bytes"] > 0, what="the upload's first part")
            assert seen_first
            for i in range(150_000, len(body), 32768):
                yield body[i:i + 32768]

        _too_large(httpx.post(f"{gw.url}/v1/audio/transcriptions", content=pieces(), headers=FORM, timeout=30))
        wait_for(lambda: "done" in seen[2] or seen[2]["error"] is not None, what="the backend's end of the upload")
        assert seen[2]["error"] is not None and "done" not in seen[2], seen[2]
        assert seen[2]["bytes"] <= 200_000
