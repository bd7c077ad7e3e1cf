"""A scriptable fake OpenAI-compatible upstream for tests.

It runs on a loopback port in its own thread and records everything it receives. Each test
scripts the answer byte by byte: ``json()`` for a whole body (optionally gzip-encoded),
``sse()`` for a stream whose chunk boundaries, delays, abrupt end or missing ``[DONE]`` the
test chooses, ``hang()`` for a backend that never answers. ``disconnects`` records when the
gateway dropped a connection (``perf_counter`` seconds), so tests can assert cancellation.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from gateway.proxy.server import BackgroundServer


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return orjson.loads(self.body)


@dataclass
class Script:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: list[bytes] | None = None
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    gzip: bool = False
    abort_after: int | None = None  # close the connection after this many chunks
    hang: bool = False
    pause_after: int | None = None  # stop after this many chunks until ``resume()``


class FakeUpstream:
    """Fake upstream server. ``url`` is its ``/v1`` base; script with ``json``/``sse``/``hang``."""

    def __init__(self):
        self.received: list[Received] = []
        self.disconnects: list[float] = []
        self.completed: list[float] = []
        self._script = Script(body=b'{"ok":true}', headers={"Content-Type": "application/json"})
        self._queue: list[Script] = []  # one-shot scripts, used before the standing one
        self._responder = None  # ``respond(fn)``: answers decided from the request, before any script
        # ``hold()``: requests wait here (after being recorded) until ``release()``, so a test can
        # keep N requests in flight for as long as it needs, however slow the machine is.
        self._gate = threading.Event()
        self._gate.set()
        # ``sse(pause_after=N)``: the stream stops after N chunks until ``resume()``.
        self._resume = threading.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._server = BackgroundServer(app)

    @property
    def url(self) -> str:
        return f"{self._server.url}/v1"

    def __enter__(self):
        self._server.__enter__()
        return self

    def __exit__(self, *exc):
        self._gate.set()  # never leave a held request or a paused stream behind
        self._resume.set()
        self._server.__exit__(*exc)

    # --- scripting -----------------------------------------------------------------
    def _set(self, script: Script, times: int | None) -> None:
        if times is None:
            self._script = script
        else:
            self._queue.extend([script] * times)

    def json(self, payload, status: int = 200, headers: dict | None = None, gzip: bool = False,
             delay_s: float = 0.0, times: int | None = None) -> None:
        """Answer with a JSON body; ``times=N`` only for the next N requests (then as before)."""
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        self._set(Script(status=status, body=body, gzip=gzip, delay_s=delay_s,
                         headers={"Content-Type": "application/json", **(headers or {})}), times)

    def sse(self, chunks: list[bytes], chunk_delay_s: float = 0.0, abort_after: int | None = None,
            delay_s: float = 0.0, headers: dict | None = None, times: int | None = None,
            pause_after: int | None = None) -> None:
        """Answer with an SSE body cut into exactly ``chunks``; ``times`` as for ``json``;
        ``pause_after=N``: send N chunks, then wait for ``resume()`` before the rest."""
        if pause_after is not None:
            self._resume.clear()
        self._set(Script(chunks=chunks, chunk_delay_s=chunk_delay_s, abort_after=abort_after, delay_s=delay_s,
                         headers={"Content-Type": "text/event-stream", **(headers or {})},
                         pause_after=pause_after), times)

    def respond(self, fn) -> None:
        """Answer each request (once ``hold`` lets it go) with ``fn(received)``: a JSON payload
        (status 200) or ``(status, payload)``; ``None`` from ``fn`` leaves that request to the scripts."""
        self._responder = fn

    def hang(self) -> None:
        self._script = Script(hang=True)

    def hold(self) -> None:
        """Keep every request from now on waiting (recorded in ``received``) until ``release()``."""
        self._gate.clear()

    def release(self) -> None:
        """Let held requests (and later ones) be answered."""
        self._gate.set()

    def resume(self) -> None:
        """Let a stream paused by ``sse(pause_after=N)`` go on."""
        self._resume.set()

    @property
    def last(self) -> Received:
        return self.received[-1]

    # --- serving -------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(Received(request.method, request.path, request.query_string,
                                      dict(request.headers), await request.read()))
        answer = self._responder(self.received[-1]) if self._responder else None
        s = self._queue.pop(0) if self._queue and answer is None else self._script
        try:
            if not self._gate.is_set():
                await asyncio.to_thread(self._gate.wait)
            if answer is not None:
                status, payload = answer if isinstance(answer, tuple) else (200, answer)
                return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")
            if s.delay_s:
                await asyncio.sleep(s.delay_s)
            if s.hang:
                await asyncio.sleep(3600)
            if s.chunks is None:
                body = gzip.compress(s.body) if s.gzip else s.body
                headers = dict(s.headers)
                if s.gzip:
                    headers["Content-Encoding"] = "gzip"
                self.completed.append(time.perf_counter())
                return web.Response(status=s.status, body=body, headers=headers)
            resp = web.StreamResponse(status=s.status, headers=s.headers)
            await resp.prepare(request)
            for i, chunk in enumerate(s.chunks):
                if s.abort_after is not None and i >= s.abort_after:
                    request.transport.close()  # abrupt end: no terminating chunk
                    return resp
                if i == s.pause_after and not self._resume.is_set():
                    await asyncio.to_thread(self._resume.wait)
                if i and s.chunk_delay_s:
                    await asyncio.sleep(s.chunk_delay_s)
                await resp.write(chunk)
            await resp.write_eof()
            self.completed.append(time.perf_counter())
            return resp
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnects.append(time.perf_counter())
            raise


def chat_chunk(content: str | None = None, finish: str | None = None, role: bool = False,
               usage: dict | None = None, choices: bool = True, model: str = "up-model",
               usage_null: bool = False) -> dict:
    """One ``chat.completion.chunk`` dict as OpenAI sends it."""
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    if choices:
        delta = {"role": "assistant", "content": ""} if role else ({"content": content} if content is not None else {})
        chunk["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    else:
        chunk["choices"] = []
    if usage is not None:
        chunk["usage"] = usage
    elif usage_null:
        chunk["usage"] = None
    return chunk


def sse_event(payload) -> bytes:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return b"data: " + data + b"\n\n"


def named_sse_event(payload: dict) -> bytes:
    """One SSE event as Anthropic sends it: ``event: <payload type>`` then its ``data:`` line."""
    return b"event: " + payload["type"].encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class FakeVllm(FakeUpstream):
    """A fake vLLM server: ``/metrics`` in vLLM's Prometheus format from the attributes
    ``running``, ``waiting``, ``kv_cache`` (0..1), ``prefix_hits`` / ``prefix_queries``;
    ``/health`` answers ``health_status`` (set ``metrics_status`` too to fail scrapes). Other
    paths are scripted as in ``FakeUpstream`` (default: a chat completion naming ``name``).
    ``scrapes`` counts ``/metrics`` requests.

    Runtime LoRA as vLLM serves it: ``POST /v1/load_lora_adapter`` / ``unload_lora_adapter``
    (404 unless ``lora_enabled``; ``lora_error = (status, message)`` fails loads), ``loras``
    (name → path) listed by ``GET /v1/models`` beside ``base_models``. With ``base_models`` set,
    a completion for a model that is neither one nor a loaded adapter is a 404, as on vLLM."""

    def __init__(self, name: str = "fake-vllm"):
        super().__init__()
        self.name = name
        self.running = 0
        self.waiting = 0
        self.kv_cache = 0.0
        self.prefix_hits = 0
        self.prefix_queries = 0
        self.health_status = 200
        self.metrics_status = 200
        self.scrapes = 0
        self.lora_enabled = True
        self.lora_error: tuple[int, str] | None = None
        self.loras: dict[str, str] = {}
        self.lora_calls: list[tuple[str, dict]] = []
        self.base_models: set[str] | None = None
        self.json({"id": "c", "object": "chat.completion", "created": 1, "model": name,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": name},
                                "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def metrics_text(self) -> str:
        labels = f'{{engine="0",model_name="{self.name}"}}'
        return (
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f"vllm:num_requests_running{labels} {float(self.running)}\n"
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f"vllm:num_requests_waiting{labels} {float(self.waiting)}\n"
            "# HELP vllm:num_requests_waiting_by_reason Number of waiting requests by reason.\n"
            "# TYPE vllm:num_requests_waiting_by_reason gauge\n"
            f'vllm:num_requests_waiting_by_reason{{engine="0",reason="capacity"}} {float(self.waiting)}\n'
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n"
            "# TYPE vllm:kv_cache_usage_perc gauge\n"
            f"vllm:kv_cache_usage_perc{labels} {float(self.kv_cache)}\n"
            "# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.\n"
            "# TYPE vllm:prefix_cache_queries_total counter\n"
            f"vllm:prefix_cache_queries_total{labels} {float(self.prefix_queries)}\n"
            "# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.\n"
            "# TYPE vllm:prefix_cache_hits_total counter\n"
            f"vllm:prefix_cache_hits_total{labels} {float(self.prefix_hits)}\n"
            "# HELP vllm:prefix_cache_hits_created Prefix cache hits, in terms of number of cached tokens.\n"
            "# TYPE vllm:prefix_cache_hits_created gauge\n"
            f"vllm:prefix_cache_hits_created{labels} 1.7e+09\n"
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/metrics":
            self.scrapes += 1
            return web.Response(status=self.metrics_status, text=self.metrics_text(),
                                content_type="text/plain", charset="utf-8")
        if request.path == "/health":
            return web.Response(status=self.health_status)
        if request.path == "/v1/models" and request.method == "GET":
            data = [{"id": m, "object": "model", "root": m, "parent": None} for m in sorted(self.base_models or ())]
            data += [{"id": n, "object": "model", "root": p, "parent": next(iter(self.base_models or ()), None)}
                     for n, p in self.loras.items()]
            return web.json_response({"object": "list", "data": data})
        if request.path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
            return self._lora(request.path.rsplit("/", 1)[1], orjson.loads(await request.read()))
        if self.base_models is not None and request.method == "POST" and request.path.endswith("/completions"):
            model = orjson.loads(await request.read()).get("model")
            if model not in self.base_models and model not in self.loras:
                return web.json_response({"error": {"message": f"The model `{model}` does not exist.",
                                                    "type": "NotFoundError", "code": 404}}, status=404)
        return await super()._handle(request)

    def _lora(self, op: str, body: dict) -> web.Response:
        self.lora_calls.append((op, body))
        if not self.lora_enabled:
            return web.json_response({"detail": "Not Found"}, status=404)
        name = body.get("lora_name")
        if op == "unload_lora_adapter":
            if self.loras.pop(name, None) is None:
                return web.json_response({"error": {"message": f"The lora adapter '{name}' cannot be found.",
                                                    "code": 404}}, status=404)
            return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")
        if self.lora_error is not None:
            status, message = self.lora_error
            return web.json_response({"error": {"message": message, "code": status}}, status=status)
        if name in self.loras and not body.get("load_inplace"):
            return web.json_response({"error": {"message": f"The lora adapter '{name}' has already been loaded.",
                                                "code": 400}}, status=400)
        self.loras[name] = body["lora_path"]
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")
