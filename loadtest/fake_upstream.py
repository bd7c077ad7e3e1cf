"""A fast fake OpenAI upstream for load tests, on raw asyncio protocols (uvloop).

``python -m loadtest fake-upstream --port 9100 --ttft-ms 0 --itl-ms 0 --tokens 20``

Answers ``POST …/chat/completions`` and ``POST …/completions`` like OpenAI: a JSON body, or
(``"stream": true``) an SSE stream of one chunk per ``chunk_tokens`` tokens, each chunk its own
HTTP chunk and its own ``write``, then (with ``stream_options.include_usage``) the usage-only
chunk, then ``data: [DONE]``. Like OpenAI, with ``include_usage`` every chunk carries
``"usage":null``. The token count is the request's ``max_tokens`` (or ``tokens``).
``ttft_ms`` delays the first chunk (or the JSON answer); ``itl_ms`` separates chunks; with
``itl_ms: 0`` the server still yields to its loop between chunks, so chunks leave as
separate writes, as a real model server's do. ``GET /health`` answers 200.

It is built to cost far less per request than the proxies it feeds: responses are encoded
once per (endpoint, model, stream, tokens, usage) and replayed; a request costs one header
scan and one ``orjson.loads``. It measured ~2.5× faster than ``llm-gateway mock-server``
(aiohttp) on this machine (see docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import threading
import time

import orjson

_WORDS = "the quick gateway relays every token to the client as soon as it arrives".split()
_OK_JSON = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-ratelimit-remaining-requests: 9999\r\n"
            b"Content-Length: %d\r\n\r\n")
_OK_SSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n")
_NOT_FOUND = b'{"error":{"message":"no such endpoint","type":"invalid_request_error","param":null,"code":null}}'
_BAD = b'{"error":{"message":"bad request body","type":"invalid_request_error","param":null,"code":null}}'


def _status(code: int, reason: str, body: bytes, keep_alive: bool = True) -> bytes:
    conn = b"" if keep_alive else b"Connection: close\r\n"
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s"
            % (code, reason.encode(), conn, len(body), body))


def _http_chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class FakeSettings:
    __slots__ = ("ttft_ms", "itl_ms", "tokens", "chunk_tokens")

    def __init__(self, ttft_ms: float = 0.0, itl_ms: float = 0.0, tokens: int = 20, chunk_tokens: int = 1):
        self.ttft_ms = ttft_ms
        self.itl_ms = itl_ms
        self.tokens = tokens
        self.chunk_tokens = max(1, chunk_tokens)


class Responses:
    """Pre-encoded answers, built on first use per (chat, model, stream, tokens, usage)."""

    def __init__(self, settings: FakeSettings):
        self.settings = settings
        self._cache: dict[tuple, bytes | list[bytes]] = {}
        self.created = int(time.time())

    def get(self, chat: bool, model: str, stream: bool, tokens: int, usage: bool) -> bytes | list[bytes]:
        key = (chat, model, stream, tokens, usage)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = (self._stream(chat, model, tokens, usage) if stream
                                      else self._json(chat, model, tokens))
            if len(self._cache) > 4096:  # unbounded model names must not grow memory
                self._cache.clear()
        return hit

    def _words(self, tokens: int) -> list[str]:
        return [("" if i == 0 else " ") + _WORDS[i % len(_WORDS)] for i in range(tokens)]

    def _usage(self, tokens: int) -> dict:
        return {"prompt_tokens": 64, "completion_tokens": tokens, "total_tokens": 64 + tokens}

    def _json(self, chat: bool, model: str, tokens: int) -> bytes:
        text = "".join(self._words(tokens))
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                      "logprobs": None, "finish_reason": "length" if tokens else "stop"}
            obj = {"id": "chatcmpl-fake", "object": "chat.completion", "created": self.created, "model": model,
                   "choices": [choice], "usage": self._usage(tokens), "system_fingerprint": "fp_fake"}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length" if tokens else "stop"}
            obj = {"id": "cmpl-fake", "object": "text_completion", "created": self.created, "model": model,
                   "choices": [choice], "usage": self._usage(tokens)}
        body = orjson.dumps(obj)
        return _OK_JSON % len(body) + body

    def _stream(self, chat: bool, model: str, tokens: int, usage: bool) -> list[bytes]:
        """``[headers + first chunk, chunk, …, usage chunk, [DONE] + terminator]``."""
        words = self._words(tokens)
        step = self.settings.chunk_tokens
        base = {"id": "chatcmpl-fake" if chat else "cmpl-fake",
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": self.created, "model": model, "system_fingerprint": "fp_fake"}
        events = []
        starts = list(range(0, len(words), step)) or [0]
        for n, start in enumerate(starts):
            text = "".join(words[start:start + step])
            finish = ("length" if words else "stop") if n == len(starts) - 1 else None
            if chat:
                delta = {"role": "assistant", "content": text} if n == 0 else {"content": text}
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            chunk = {**base, "choices": [choice]}
            if usage:
                chunk["usage"] = None
            events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
        if usage:
            events.append(b"data: " + orjson.dumps({**base, "choices": [], "usage": self._usage(len(words))})
                          + b"\n\n")
        out = [_http_chunk(e) for e in events]
        out[0] = _OK_SSE + out[0]
        out.append(_http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        return out


class FakeUpstreamProtocol(asyncio.Protocol):
    """One client connection: parse requests (Content-Length bodies), answer from ``Responses``."""

    __slots__ = ("_r", "_t", "_buf", "_loop")

    def __init__(self, responses: Responses):
        self._r = responses
        self._t: asyncio.Transport | None = None
        self._buf = b""
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport) -> None:
        self._t = transport

    def connection_lost(self, exc) -> None:
        self._t = None

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        while buf:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                break
            head = buf[:i]
            low = head.lower()
            j = low.find(b"content-length:")
            length = 0
            if j >= 0:
                end = low.find(b"\r\n", j)
                length = int(low[j + 15:end if end >= 0 else None])
            if len(buf) < i + 4 + length:
                break
            body = buf[i + 4:i + 4 + length]
            buf = buf[i + 4 + length:]
            self._handle(head, body)
        self._buf = buf

    def _handle(self, head: bytes, body: bytes) -> None:
        t = self._t
        if t is None:
            return
        line_end = head.find(b"\r\n")
        method, _, rest = head[:line_end].partition(b" ")
        path = rest.partition(b" ")[0].partition(b"?")[0]
        if method == b"GET":
            t.write(_status(200, "OK", b'{"status":"ok"}') if path.endswith(b"/health") or path == b"/"
                    else _status(404, "Not Found", _NOT_FOUND))
            return
        chat = path.endswith(b"/chat/completions")
        if not chat and not path.endswith(b"/completions"):
            t.write(_status(404, "Not Found", _NOT_FOUND))
            return
        try:
            req = orjson.loads(body)
            model = req.get("model") or "fake-model"
            stream = req.get("stream") is True
            limit = req.get("max_tokens") or req.get("max_completion_tokens")
        except (orjson.JSONDecodeError, AttributeError):
            t.write(_status(400, "Bad Request", _BAD))
            return
        s = self._r.settings
        tokens = min(s.tokens, limit) if isinstance(limit, int) and limit >= 0 else s.tokens
        usage = False
        if stream:
            options = req.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
        answer = self._r.get(chat, model, stream, tokens, usage)
        if not stream:
            if s.ttft_ms or s.itl_ms:
                delay = (s.ttft_ms + s.itl_ms * max(tokens - 1, 0)) / 1000
                self._loop.call_later(delay, self._write_later, answer)
            else:
                t.write(answer)
            return
        self._loop.create_task(self._stream(answer))

    def _write_later(self, data: bytes) -> None:
        if self._t is not None:
            self._t.write(data)

    async def _stream(self, chunks: list[bytes]) -> None:
        s = self._r.settings
        if s.ttft_ms:
            await asyncio.sleep(s.ttft_ms / 1000)
        gap = s.itl_ms / 1000
        last = len(chunks) - 1
        for n, chunk in enumerate(chunks):
            t = self._t
            if t is None:
                return
            t.write(chunk)
            if n < last:
                await asyncio.sleep(gap)


async def start_fake_upstream(host: str = "127.0.0.1", port: int = 0,
                              settings: FakeSettings | None = None) -> tuple[asyncio.Server, int]:
    """Start serving on the running loop; returns the server and its bound port."""
    responses = Responses(settings or FakeSettings())
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: FakeUpstreamProtocol(responses), host, port, backlog=2048,
                                      reuse_address=True)
    return server, server.sockets[0].getsockname()[1]


def serve(host: str, port: int, settings: FakeSettings) -> None:
    """Serve in the foreground until SIGTERM/SIGINT (uvloop)."""
    from loadtest.procs import serve_until_signal

    async def main() -> None:
        server, bound = await start_fake_upstream(host, port, settings)
        print(f"fake upstream listening on http://{host}:{bound}", flush=True)
        await serve_until_signal()
        server.close()

    from loadtest.generator import run_async
    run_async(main())


class FakeUpstreamThread:
    """The fake upstream on a daemon thread with its own loop (tests, notebooks).

    ``with FakeUpstreamThread(FakeSettings(tokens=5)) as fake: fake.url`` → ``http://127.0.0.1:PORT``.
    """

    def __init__(self, settings: FakeSettings | None = None, host: str = "127.0.0.1"):
        self.settings = settings or FakeSettings()
        self.host = host
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-upstream", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> FakeUpstreamThread:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(start_fake_upstream(self.host, 0, self.settings), self.loop)
        self._server, self.port = fut.result(10)
        return self

    def __exit__(self, *exc) -> None:
        async def stop() -> None:
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()
