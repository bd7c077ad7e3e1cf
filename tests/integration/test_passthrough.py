"""Everything else passes through (issue 20 §3): multipart uploads routed by the form's model
or by ``passthrough:``, GET/DELETE on stored objects, model-less POSTs, 404 for unknown paths.

The client is the official OpenAI SDK; the backend is the recording fake upstream, which
shows what arrived (the form intact, the backend's own key).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading

import aiohttp
import httpx
import openai
import orjson
import pytest
from aiohttp import web

from gateway.app import FINISHERS
from gateway.proxy.multipart import read_form
from gateway.proxy.server import BackgroundServer
from tests.support.polling import wait_for

AUDIO = os.urandom(300_000)  # bytes that are not text: any change to them shows
KEY_ALL = "sk-gw-pt-all-0123456789abcdef"  # every path: uploads carry a key (the browser guard)
KEY_DEFAULT = "sk-gw-pt-default-0123456789ab"
KEY_FILES = "sk-gw-pt-files-0123456789abcd"
AUTH = {"Authorization": f"Bearer {KEY_ALL}"}
FILE = {"id": "file-abc", "object": "file", "bytes": 3, "created_at": 1, "filename": "b.jsonl",
        "purpose": "batch", "status": "processed"}
BATCH = {"id": "batch_1", "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": "file-abc",
         "completion_window": "24h", "status": "validating", "created_at": 1}


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _config(url: str, extra: str = "") -> str:
    return f"""
telemetry: {{enabled: false}}
backends:
  openai: {{type: openai, base_url: "{url}", api_key: sk-backend-secret}}
models:
  whisper: {{targets: [{{backend: openai, model: whisper-1}}]}}
passthrough:
  - {{path: "files*", backend: openai}}
  - {{path: "batches*", backend: openai}}
  - {{path: moderations, backend: openai}}
  - {{path: "responses/*", backend: openai}}
keys:
  - {{tenant: all, sha256: {_sha(KEY_ALL)}, endpoints: ["*"]}}
{extra}"""


@pytest.fixture
def gw(make_gateway, upstream):
    return make_gateway(_config(upstream.url))


def sdk(gw, key: str = KEY_ALL) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)


def adopt(gw, tenant: str, *ids: str) -> None:
    """Objects stored at the backend outside the gateway, adopted for ``tenant`` (a tenant
    reaches only its own; see tests/integration/test_object_ownership.py)."""
    r = httpx.post(f"{gw.url}/admin/objects", json={"tenant": tenant, "ids": list(ids)}, timeout=30)
    assert r.status_code == 200, r.text


def _form_fields(received) -> dict[str, bytes]:
    """The parts of a multipart body as the upstream received it, by name."""
    boundary = received.headers["Content-Type"].split("boundary=")[1].strip('"').encode()
    parts = received.body.split(b"--" + boundary)[1:-1]
    out = {}
    for part in parts:
        head, _, content = part[2:].partition(b"\r\n\r\n")
        name = head.split(b'name="')[1].split(b'"')[0].decode()
        out[name] = content[:-2]  # the CRLF before the next delimiter
    return out


def test_a_transcription_is_routed_by_its_form_model_with_the_form_intact(gw, upstream):
    upstream.json({"text": "hello"}, times=1)
    got = sdk(gw).audio.transcriptions.create(file=("speech.wav", AUDIO, "audio/wav"), model="whisper",
                                              language="en")
    assert got.text == "hello"
    r = upstream.last
    assert (r.method, r.path) == ("POST", "/v1/audio/transcriptions")
    assert r.headers["Authorization"] == "Bearer sk-backend-secret"  # the backend's key, not the client's
    assert r.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert int(r.headers["Content-Length"]) == len(r.body)
    fields = _form_fields(r)
    assert fields == {"model": b"whisper-1", "language": b"en", "file": AUDIO}  # the target's model name

    # response_format=text: the answer keeps its content type
    upstream.json(b"hello\n", headers={"Content-Type": "text/plain; charset=utf-8"}, times=1)
    raw = sdk(gw).audio.transcriptions.with_raw_response.create(
        file=("speech.wav", AUDIO, "audio/wav"), model="whisper", response_format="text")
    assert raw.headers["content-type"] == "text/plain; charset=utf-8" and raw.parse() == "hello\n"
    assert raw.headers["x-gateway-backend"] == "openai"
    assert _form_fields(upstream.last)["file"] == AUDIO


def test_files_and_batches_go_to_the_passthrough_backend(gw, upstream):
    client = sdk(gw)
    upstream.json(FILE, times=1)
    assert client.files.create(file=("b.jsonl", b'{"a":1}\n', "application/jsonl"), purpose="batch").id == "file-abc"
    r = upstream.last
    assert (r.method, r.path, r.headers["Authorization"]) == ("POST", "/v1/files", "Bearer sk-backend-secret")
    assert _form_fields(r) == {"purpose": b"batch", "file": b'{"a":1}\n'}
    upstream.json(FILE, times=1)
    assert client.files.retrieve("file-abc").filename == "b.jsonl"
    assert (upstream.last.method, upstream.last.path) == ("GET", "/v1/files/file-abc")
    upstream.json(AUDIO, headers={"Content-Type": "application/octet-stream"}, times=1)
    assert client.files.content("file-abc").content == AUDIO  # relayed as it arrived, unchanged
    assert (upstream.last.method, upstream.last.path) == ("GET", "/v1/files/file-abc/content")
    upstream.json(BATCH, times=1)
    batch = client.batches.create(input_file_id="file-abc", endpoint="/v1/chat/completions",
                                  completion_window="24h")
    assert batch.id == "batch_1" and upstream.last.json()["input_file_id"] == "file-abc"
    upstream.json({"id": "file-abc", "object": "file", "deleted": True}, times=1)
    assert client.files.delete("file-abc").deleted is True
    assert (upstream.last.method, upstream.last.path) == ("DELETE", "/v1/files/file-abc")
    upstream.json(BATCH, times=1)
    assert client.batches.retrieve("batch_1").status == "validating"
    assert (upstream.last.method, upstream.last.path) == ("GET", "/v1/batches/batch_1")
    upstream.json({**BATCH, "status": "cancelling"}, times=1)
    assert client.batches.cancel("batch_1").status == "cancelling"  # a POST without a body
    assert (upstream.last.method, upstream.last.path, upstream.last.body) == ("POST", "/v1/batches/batch_1/cancel", b"")

    upstream.json({"id": "modr-1", "model": "omni-moderation-latest", "results": []}, times=1)
    assert client.moderations.create(input="hello").model == "omni-moderation-latest"
    assert upstream.last.path == "/v1/moderations" and "model" not in upstream.last.json()

    adopt(gw, "all", "resp_1")  # stored at the backend outside the gateway
    upstream.json({"id": "resp_1", "object": "response", "status": "completed"}, times=1)
    r = httpx.get(f"{gw.url}/v1/responses/resp_1", headers=AUTH, timeout=30)
    assert r.status_code == 200 and r.json()["id"] == "resp_1" and upstream.last.path == "/v1/responses/resp_1"


def test_a_path_nothing_routes_is_404_invalid_url(gw, upstream):
    for method, path, body in [("GET", "nothing/here", None), ("DELETE", "models-x", None),
                               ("GET", "chat/completions", None), ("POST", "nothing", {"input": "x"})]:
        r = httpx.request(method, f"{gw.url}/v1/{path}", json=body, headers=AUTH, timeout=30)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["message"] == f"Invalid URL ({method} /v1/{path})"
        assert r.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):  # an inference endpoint without a model stays a 400
        sdk(gw).chat.completions.create(model="", messages=[{"role": "user", "content": "x"}])
    assert not upstream.received


def test_passthrough_paths_obey_the_keys_endpoints(make_gateway, upstream):
    gw = make_gateway(_config(upstream.url, f"""
  - {{tenant: a, sha256: {_sha(KEY_DEFAULT)}, models: ["whisper"]}}
  - {{tenant: b, sha256: {_sha(KEY_FILES)}, models: ["whisper"], endpoints: [default, "files*"]}}
"""))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk(gw, KEY_DEFAULT).files.retrieve("file-abc")
    assert caught.value.code == "endpoint_not_allowed" and not upstream.received
    adopt(gw, "b", "file-abc")
    upstream.json(FILE, times=1)
    assert sdk(gw, KEY_FILES).files.retrieve("file-abc").id == "file-abc"  # no model: its globs don't apply
    upstream.json({"text": "ok"}, times=1)
    assert sdk(gw, KEY_DEFAULT).audio.transcriptions.create(file=("a.wav", b"RIFF", "audio/wav"),
                                                            model="whisper").text == "ok"


def test_a_form_is_read_only_up_to_its_first_file_and_streamed_on(make_gateway, upstream):
    """The gateway reads the form's fields, not the upload: a large file after `model` is sent
    on while the client is still sending it (the body is never whole in the gateway)."""
    seen = {}

    async def handler(request: web.Request) -> web.Response:
        form = await read_form(request, 64 * 1024 * 1024)
        seen.update(fields=form.fields, head=len(form.head), whole=form.whole)
        body, _ = form.body("whisper-1")
        total = 0
        async for chunk in body:  # type: ignore[union-attr]  # streamed: an async iterable
            total += len(chunk)
        seen["total"] = total
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/up", handler)
    big = os.urandom(8 * 1024 * 1024)
    with BackgroundServer(app) as server:
        async def send() -> int:
            data = aiohttp.FormData()
            data.add_field("model", "whisper")
            data.add_field("file", big, filename="a.wav", content_type="audio/wav")
            async with aiohttp.ClientSession() as session:
                async with session.post(f"{server.url}/up", data=data) as resp:
                    return resp.status
        assert asyncio.run(send()) == 200
    wait_for(lambda: "total" in seen, what="the handler")
    assert seen["fields"] == {"model": "whisper"} and seen["whole"] is False
    assert seen["head"] < 1024 * 1024  # what was read before sending on: not the 8 MiB file
    assert seen["total"] > len(big)  # the whole body went on, model renamed


def test_the_model_after_the_file_and_a_body_over_the_limit(make_gateway, upstream):
    gw = make_gateway(_config(upstream.url).replace("keys:", "server: {upload_limit_bytes: 200000}\nkeys:"))
    upstream.json({"text": "late"})
    audio = AUDIO[:100_000]
    body = (b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'
            + audio + b'\r\n--B\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper\r\n--B--\r\n')
    r = httpx.post(f"{gw.url}/v1/audio/transcriptions", content=body, timeout=30,
                   headers={**AUTH, "Content-Type": "multipart/form-data; boundary=B"})
    assert r.status_code == 200 and r.json() == {"text": "late"}
    assert _form_fields(upstream.last) == {"file": audio, "model": b"whisper-1"}
    big = {"file": ("a.wav", AUDIO, "audio/wav")}
    r = httpx.post(f"{gw.url}/v1/audio/transcriptions", files=big, data={"model": "whisper"}, headers=AUTH,
                   timeout=30)
    assert r.status_code == 413 and len(upstream.received) == 1


def test_a_broken_form_is_a_400_and_goes_nowhere(gw, upstream):
    url = f"{gw.url}/v1/audio/transcriptions"
    for content_type, body in [("multipart/form-data", b"x"), ("multipart/form-data; boundary=b", b"--b\r\nbroken"),
                               ("multipart/form-data; boundary=b", b"--b\r\n" + b"x" * 40_000)]:
        r = httpx.post(url, content=body, headers={**AUTH, "Content-Type": content_type}, timeout=30)
        assert r.status_code == 400, (content_type, r.text)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert not upstream.received


def test_a_form_cut_into_small_reads_arrives_intact(gw, upstream):
    """Delimiters and part headers split across reads (a chunked upload without Content-Length)."""
    upstream.json({"text": "ok"})
    audio = AUDIO[:5000]
    body = (b'preamble\r\n--x-7\r\nContent-Disposition: form-data; name="language"\r\n\r\nen\r\n'
            b'--x-7\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'
            + audio + b'\r\n--x-7\r\ncontent-disposition: form-data; name=model\r\n\r\nwhisper\r\n--x-7--\r\n')

    def pieces():
        for i in range(0, len(body), 7):
            yield body[i:i + 7]

    r = httpx.post(f"{gw.url}/v1/audio/transcriptions", content=pieces(), timeout=30,
                   headers={**AUTH, "Content-Type": 'multipart/form-data; boundary="x-7"'})
    assert r.status_code == 200, r.text
    got = upstream.last.body
    assert got == body.replace(b"\r\n\r\nwhisper\r\n", b"\r\n\r\nwhisper-1\r\n")


def test_a_client_that_leaves_after_the_final_event_got_the_whole_stream(gw, upstream):
    """A transcription stream is whole at its final event, as a chat stream is at ``[DONE]``: a
    client that hangs up then (the backend's connection still open) is no 499."""
    records: list = []
    gw.app[FINISHERS].append(records.append)
    done = {"type": "transcript.text.done", "text": "Hello",
            "usage": {"type": "tokens", "input_tokens": 12, "output_tokens": 2, "total_tokens": 14}}
    upstream.sse([b'data: {"type":"transcript.text.delta","delta":"Hello"}\n\n', b"data: " + orjson.dumps(done)
                  + b"\n\n", b": keep-alive\n\n"], pause_after=2)
    try:
        with sdk(gw).audio.transcriptions.with_streaming_response.create(
                file=("a.wav", AUDIO[:1000], "audio/wav"), model="whisper", stream=True) as r:
            for line in r.iter_lines():
                if line.startswith("data:") and "transcript.text.done" in line:
                    break  # the SDK user has what it wanted and closes the connection
        wait_for(lambda: records, what="the request to finish")
    finally:
        upstream.resume()
    ctx = records[0]
    assert (ctx.status_code, ctx.error_type, ctx.truncated, ctx.usage.completion_tokens) == (200, "", False, 2)


def test_the_default_endpoints_are_inference_posts_not_reads_of_the_account(make_gateway, upstream):
    """With a catch-all ``passthrough:``, ``GET /v1/chat/completions`` would list every stored
    completion of the backend's account (every tenant's): the default set lets a key POST to the
    inference paths, not read them; a listed glob allows every method."""
    config = _config(upstream.url, f"""
  - {{tenant: a, sha256: {_sha(KEY_DEFAULT)}}}
  - {{tenant: b, sha256: {_sha(KEY_FILES)}, endpoints: [default, "chat/completions*"]}}
""").replace('  - {path: "files*", backend: openai}', '  - {path: "*", backend: openai}')
    gw = make_gateway(config)
    listing = {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk(gw, KEY_DEFAULT).chat.completions.list()
    assert caught.value.code == "endpoint_not_allowed" and not upstream.received
    for key in (KEY_ALL, KEY_FILES):  # "*", and a glob the key lists
        upstream.json(listing, times=1)
        sdk(gw, key).chat.completions.list()
        assert (upstream.last.method, upstream.last.path) == ("GET", "/v1/chat/completions")
    upstream.json({"id": "modr-1", "model": "omni-moderation-latest", "results": []}, times=1)
    assert sdk(gw, KEY_DEFAULT).moderations.create(input="x").id == "modr-1"  # a POST of the default set


def test_a_file_upload_without_a_model_streams_on_as_it_arrives(make_gateway):
    """``/v1/files`` forms name no model: on a path ``passthrough:`` routes, the gateway stops
    reading at the first file and sends the rest on while the client is still sending it (a
    512 MB batch file is never held whole)."""
    arrived = threading.Event()
    seen = {}

    async def files(request: web.Request) -> web.Response:
        digest, total = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            total += len(chunk)
            if total > 1024 * 1024:
                arrived.set()  # the upload has begun to arrive upstream
        seen.update(total=total, sha=digest.hexdigest(), headers=dict(request.headers))
        return web.json_response(FILE)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/files", files)
    data = os.urandom(4 * 1024 * 1024)
    head = (b'--B\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n--B\r\nContent-Disposition: '
            b'form-data; name="file"; filename="big.jsonl"\r\nContent-Type: application/jsonl\r\n\r\n')
    body = head + data + b"\r\n--B--\r\n"

    def sending():
        yield body[:2 * 1024 * 1024]
        # The rest only once the gateway has sent the first part on: a gateway that waits for
        # the whole body would wait here in vain.
        seen["streamed"] = arrived.wait(30)
        yield body[2 * 1024 * 1024:]

    with BackgroundServer(app) as server:
        gw = make_gateway(_config(f"{server.url}/v1").replace("keys:", "server: {upload_limit_bytes: 8000000}\nkeys:"))
        r = httpx.post(f"{gw.url}/v1/files", content=sending(), timeout=60,
                       headers={**AUTH, "Content-Type": "multipart/form-data; boundary=B"})
    assert r.status_code == 200 and r.json()["id"] == "file-abc"
    assert seen["streamed"] is True
    assert (seen["total"], seen["sha"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert seen["headers"]["Authorization"] == "Bearer sk-backend-secret"


@pytest.mark.parametrize("chunked", [True, False])
@pytest.mark.parametrize("where", ["before the file", "after the file", "after the file of a passthrough path"])
def test_a_form_naming_its_model_twice_is_refused(gw, upstream, where, chunked):
    """Backends built on Starlette read a form's last ``model``: a second one would reach a
    model the key was never checked for (and priced as another). As for JSON: 400 duplicate_key."""
    upstream.json({"text": "ok"})
    model = b'--B\r\nContent-Disposition: form-data; name="model"\r\n\r\n%s\r\n'
    audio = b'--B\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + AUDIO + b"\r\n"
    body = model % b"whisper" + (model % b"gpt-4o-transcribe" + audio if where == "before the file"
                                 else audio + model % b"gpt-4o-transcribe") + b"--B--\r\n"
    path = "audio/transcriptions"
    if where.endswith("passthrough path"):  # read to the first file only: a model after it would go unchecked
        body, path = body.replace(model % b"whisper", b""), "files"

    def pieces():  # chunked: the gateway sends the form on before it has read all of it
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    r = httpx.post(f"{gw.url}/v1/{path}", content=pieces() if chunked else body, timeout=30,
                   headers={**AUTH, "Content-Type": "multipart/form-data; boundary=B"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "duplicate_key", r.text
    assert all(b"gpt-4o-transcribe" not in x.body for x in upstream.received)  # never reached a model


def test_an_upload_the_client_spoils_midway_is_its_error_not_the_backends(make_gateway, upstream):
    """A streamed upload that runs past the upload limit is a 413, and is the client's doing: the
    backend's circuit stays closed however often a client does it."""
    gw = make_gateway(_config(upstream.url).replace("keys:", "server: {upload_limit_bytes: 200000}\nkeys:"))
    upstream.json({"text": "ok"})
    body = (b'--B\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper\r\n--B\r\nContent-Disposition: '
            b'form-data; name="file"; filename="a.wav"\r\n\r\n' + AUDIO + b"\r\n--B--\r\n")

    def pieces():
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    for _ in range(6):  # more than the breaker's consecutive_failures (5)
        r = httpx.post(f"{gw.url}/v1/audio/transcriptions", content=pieces(), timeout=30,
                       headers={**AUTH, "Content-Type": "multipart/form-data; boundary=B"})
        assert r.status_code == 413, r.text
    got = sdk(gw).audio.transcriptions.create(file=("a.wav", AUDIO[:1000], "audio/wav"), model="whisper")
    assert got.text == "ok"


def test_a_body_sent_with_another_method_than_post_goes_on_as_sent(gw, upstream):
    adopt(gw, "all", "file-abc")
    upstream.json(FILE, times=1)
    r = httpx.request("PATCH", f"{gw.url}/v1/files/file-abc", headers=AUTH, json={"purpose": "batch"}, timeout=30)
    assert r.status_code == 200
    got = upstream.last
    assert (got.method, got.body, got.headers["Content-Type"]) == ("PATCH", b'{"purpose":"batch"}', "application/json")
    upstream.json(FILE, times=1)
    assert httpx.delete(f"{gw.url}/v1/files/file-abc", headers=AUTH, timeout=30).status_code == 200
    assert (upstream.last.method, upstream.last.body) == ("DELETE", b"")


def test_an_odd_event_in_a_transcription_stream_is_relayed_as_sent(gw, upstream):
    done = {"type": "transcript.text.done", "text": "Hi", "usage": {"input_tokens": 3, "output_tokens": 1}}
    events = [b'data: {"type":["x"],"delta":5}\n\n', b"data: " + orjson.dumps(done) + b"\n\n"]
    upstream.sse(events, times=1)
    r = httpx.post(f"{gw.url}/v1/audio/transcriptions", headers=AUTH, timeout=30,
                   files={"file": ("a.wav", AUDIO[:100], "audio/wav")}, data={"model": "whisper", "stream": "true"})
    assert (r.status_code, r.content) == (200, b"".join(events))


def test_a_catch_all_passthrough_does_not_serve_inference_without_a_model(make_gateway, upstream):
    """A vLLM server answers a chat request without ``model`` with its own model: through a
    catch-all ``passthrough:`` that would serve a key limited to other models. OpenAI's answer
    instead: those endpoints need a model (moderations and images do not)."""
    config = _config(upstream.url, f"""
  - {{tenant: a, sha256: {_sha(KEY_DEFAULT)}, models: ["whisper"]}}
""").replace('  - {path: "files*", backend: openai}', '  - {path: "*", backend: openai}')
    gw = make_gateway(config)
    for path, body in [("chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
                       ("embeddings", {"input": "x"}), ("completions", {"prompt": "x"}),
                       ("responses", {"input": "x"})]:
        r = httpx.post(f"{gw.url}/v1/{path}", json=body, headers={"Authorization": f"Bearer {KEY_DEFAULT}"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "model", (path, r.text)
    form = {"file": ("a.wav", b"RIFF", "audio/wav")}
    r = httpx.post(f"{gw.url}/v1/audio/transcriptions", files=form, headers={"Authorization": f"Bearer {KEY_DEFAULT}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    assert not upstream.received
    upstream.json({"id": "modr-1", "model": "omni-moderation-latest", "results": []}, times=1)
    assert sdk(gw, KEY_DEFAULT).moderations.create(input="x").id == "modr-1"
    upstream.json({"id": "voice_1"}, times=1)  # a custom voice names no model: passed through
    r = httpx.post(f"{gw.url}/v1/audio/voices", files={"audio_sample": ("a.wav", b"RIFF", "audio/wav")},
                   data={"name": "v"}, headers=AUTH)
    assert r.status_code == 200 and upstream.last.path == "/v1/audio/voices"
    # A stored response is read, listed, cancelled and deleted without a model, as before.
    adopt(gw, "all", "resp_1")  # stored at the backend outside the gateway
    for method, path in [("GET", "responses/resp_1"), ("GET", "responses/resp_1/input_items"),
                         ("POST", "responses/resp_1/cancel"), ("DELETE", "responses/resp_1")]:
        upstream.json({"id": "resp_1", "object": "response"}, times=1)
        r = httpx.request(method, f"{gw.url}/v1/{path}", headers=AUTH)
        assert r.status_code == 200 and (upstream.last.method, upstream.last.path) == (method, f"/v1/{path}")


def test_a_file_download_cut_short_is_a_cut_not_a_corrupted_success(gw, upstream):
    """No in-band error event fits into a file's bytes: the client's HTTP library must see the
    body end early (an incomplete read), never a 200 with JSON appended to the file."""
    upstream.sse([AUDIO[:1000], AUDIO[1000:2000], AUDIO[2000:3000]], abort_after=2,
                 headers={"Content-Type": "application/octet-stream"}, times=1)
    records: list = []
    gw.app[FINISHERS].append(records.append)
    adopt(gw, "all", "file-abc")
    with pytest.raises(openai.APIConnectionError):
        sdk(gw).files.content("file-abc")
    wait_for(lambda: records, what="the request to finish")
    assert (records[0].status_code, records[0].truncated) == (502, True)
    upstream.sse([AUDIO[:1000], AUDIO[1000:2000]], headers={"Content-Type": "application/octet-stream"}, times=1)
    assert sdk(gw).files.content("file-abc").content == AUDIO[:2000]


def test_speech_is_relayed_as_it_is_made_with_its_usage(make_gateway, upstream):
    """``/v1/audio/speech`` answers audio bytes (or ``stream_format: sse`` events) as they are
    made: relayed as they arrive, not held until the whole answer is in; the SSE form's
    ``speech.audio.done`` carries the usage."""
    gw = make_gateway(_config(upstream.url).replace(
        "models:\n", "models:\n  tts: {targets: [{backend: openai, model: gpt-4o-mini-tts}]}\n"))
    records: list = []
    gw.app[FINISHERS].append(records.append)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=KEY_ALL, max_retries=0, timeout=20)
    upstream.sse([AUDIO[:1000], AUDIO[1000:3000]], headers={"Content-Type": "audio/mpeg"}, pause_after=1, times=1)
    try:
        with client.audio.speech.with_streaming_response.create(model="tts", input="hi", voice="alloy") as r:
            pieces = r.iter_bytes()
            assert next(pieces) == AUDIO[:1000]  # while the backend is still making the rest
            upstream.resume()
            assert b"".join(pieces) == AUDIO[1000:3000]
            assert r.headers["content-type"] == "audio/mpeg"
    finally:
        upstream.resume()
    usage = {"input_tokens": 4, "output_tokens": 30, "total_tokens": 34}
    events = [b'data: {"type":"speech.audio.delta","audio":"aGk="}\n\n',
              b"data: " + orjson.dumps({"type": "speech.audio.done", "usage": usage}) + b"\n\n"]
    upstream.sse(events, times=1)
    with client.audio.speech.with_streaming_response.create(model="tts", input="hi", voice="alloy",
                                                            stream_format="sse") as r:
        assert r.read() == b"".join(events)
    wait_for(lambda: len(records) == 2, what="both requests to finish")
    assert [(c.status_code, c.usage.prompt_tokens, c.usage.completion_tokens) for c in records] == \
        [(200, None, None), (200, 4, 30)]


def test_reading_a_stored_object_is_not_billed_for_the_work_it_records(gw, upstream):
    """A batch (or a stored response) carries the usage of work done when it ran: polling it
    is no new work, so its row and the key's budget take none of it, however often it is read."""
    records: list = []
    gw.app[FINISHERS].append(records.append)
    usage = {"input_tokens": 90000, "output_tokens": 30000, "total_tokens": 120000,
             "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
    adopt(gw, "all", "batch_1", "resp_1")
    upstream.json({**BATCH, "status": "completed", "model": "gpt-4o-mini", "usage": usage}, times=1)
    assert sdk(gw).batches.retrieve("batch_1").usage.total_tokens == 120000  # relayed as sent
    upstream.json({"id": "resp_1", "object": "response", "status": "completed", "model": "gpt-4o",
                   "output": [], "usage": usage}, times=1)
    assert httpx.get(f"{gw.url}/v1/responses/resp_1", headers=AUTH, timeout=30).json()["usage"] == usage
    wait_for(lambda: len(records) == 2, what="both requests to finish")
    for ctx in records:
        assert (ctx.status_code, ctx.usage.prompt_tokens, ctx.usage.completion_tokens) == (200, None, None)
