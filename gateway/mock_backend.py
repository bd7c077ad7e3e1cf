"""The built-in deterministic ``mock`` backend.

It answers OpenAI-shaped chat completions, text completions and embeddings in-process (or,
through ``build_mock_app``, as a standalone HTTP server for load tests) with configurable
TTFT, inter-chunk gaps, token count and chunk size. The same request always yields the same
text: words are picked from a fixed vocabulary by a hash of the request.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from gateway.config.models import MockSettings
from gateway.sse import DONE_EVENT, encode_data_event

_WORDS = (
    "the gateway streams tokens quickly while logging every request to ClickHouse and routing "
    "traffic across backends with retries fallbacks caching and versioned prompts for teams"
).split()
_JSON_HEADERS = {"Content-Type": "application/json"}
_SSE_HEADERS = {"Content-Type": "text/event-stream"}


def _seed(body: dict[str, Any]) -> int:
    material = orjson.dumps(body.get("messages") or body.get("prompt") or body.get("input") or "")
    return int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big")


def _prompt_tokens(body: dict[str, Any]) -> int:
    """A cheap, deterministic stand-in for tokenisation: whitespace-separated words."""
    total = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content.split()) + 4
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        total += len(prompt.split())
    elif isinstance(prompt, list):
        total += sum(len(p.split()) if isinstance(p, str) else 1 for p in prompt)
    return max(total, 1)


class MockResponse:
    """One mock answer with the same surface as an HTTP upstream response.

    ``status`` (int), ``headers`` (dict), ``await read()`` → the whole JSON body,
    ``iter_chunks()`` → SSE event bytes for streamed requests, ``close()``.
    """

    __slots__ = ("status", "headers", "_settings", "_endpoint", "_body", "_model")

    def __init__(self, settings: MockSettings, endpoint: str, body: dict[str, Any], model: str):
        self._settings = settings
        self._endpoint = endpoint
        self._body = body
        self._model = model
        if endpoint not in ("chat/completions", "completions", "embeddings"):
            self.status = 404
            self.headers = _JSON_HEADERS
        else:
            self.status = 200
            self.headers = _SSE_HEADERS if body.get("stream") else _JSON_HEADERS

    def _completion_tokens(self) -> int:
        limit = self._body.get("max_completion_tokens") or self._body.get("max_tokens")
        n = self._settings.tokens
        return min(n, limit) if isinstance(limit, int) and limit >= 0 else n

    def _words(self) -> list[str]:
        seed = _seed(self._body)
        count = len(_WORDS)
        return [("" if i == 0 else " ") + _WORDS[(seed + i * 7) % count] for i in range(self._completion_tokens())]

    def _usage(self, completion: int) -> dict[str, int]:
        prompt = _prompt_tokens(self._body)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    async def read(self) -> bytes:
        s = self._settings
        if self.status != 200:
            return orjson.dumps({"error": {"message": f"mock backend has no /{self._endpoint}",
                                           "type": "invalid_request_error", "param": None, "code": "not_found"}})
        delay = (s.latency_ms + s.ttft_ms + s.itl_ms * max(self._completion_tokens() - 1, 0)) / 1000
        if delay:
            await asyncio.sleep(delay)
        created = int(time.time())
        rid = f"mock-{_seed(self._body):016x}"
        if self._endpoint == "embeddings":
            return orjson.dumps(self._embeddings(created))
        words = self._words()
        out: dict[str, Any]
        if self._endpoint == "chat/completions":
            out = {"id": f"chatcmpl-{rid}", "object": "chat.completion", "created": created, "model": self._model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(words)},
                                "logprobs": None, "finish_reason": "length" if words else "stop"}]}
        else:
            out = {"id": f"cmpl-{rid}", "object": "text_completion", "created": created, "model": self._model,
                   "choices": [{"index": 0, "text": "".join(words), "logprobs": None,
                                "finish_reason": "length" if words else "stop"}]}
        if s.usage:
            out["usage"] = self._usage(len(words))
        return orjson.dumps(out)

    def _embeddings(self, created: int) -> dict[str, Any]:
        inputs = self._body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        dims = self._settings.embedding_dims
        data = []
        for i, item in enumerate(items):
            digest = hashlib.blake2b(orjson.dumps(item), digest_size=dims).digest()
            data.append({"object": "embedding", "index": i, "embedding": [b / 255 - 0.5 for b in digest]})
        out: dict[str, Any] = {"object": "list", "data": data, "model": self._model}
        if self._settings.usage:
            tokens = sum(len(str(x).split()) for x in items)
            out["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return out

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        s = self._settings
        created = int(time.time())
        chat = self._endpoint == "chat/completions"
        rid = f"{'chatcmpl' if chat else 'cmpl'}-mock-{_seed(self._body):016x}"
        obj = "chat.completion.chunk" if chat else "text_completion"
        words = self._words()
        if s.ttft_ms:
            await asyncio.sleep(s.ttft_ms / 1000)
        if chat:
            yield encode_data_event({"id": rid, "object": obj, "created": created, "model": self._model,
                                     "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                                  "logprobs": None, "finish_reason": None}]})
        step = s.chunk_tokens
        for start in range(0, len(words), step):
            if start and s.itl_ms:
                await asyncio.sleep(s.itl_ms / 1000)
            text = "".join(words[start:start + step])
            last = start + step >= len(words)
            finish = "length" if last else None
            choice = ({"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": finish} if chat
                      else {"index": 0, "text": text, "logprobs": None, "finish_reason": finish})
            yield encode_data_event({"id": rid, "object": obj, "created": created, "model": self._model,
                                     "choices": [choice]})
        if not words:
            choice = ({"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"} if chat
                      else {"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"})
            yield encode_data_event({"id": rid, "object": obj, "created": created, "model": self._model,
                                     "choices": [choice]})
        options = self._body.get("stream_options") or {}
        if s.usage and options.get("include_usage"):
            yield encode_data_event({"id": rid, "object": obj, "created": created, "model": self._model,
                                     "choices": [], "usage": self._usage(len(words))})
        yield DONE_EVENT

    def close(self) -> None:
        """Nothing to release: the mock holds no connection."""

    release = close


def build_mock_app(settings: MockSettings) -> web.Application:
    """A standalone HTTP server for the mock backend (``/v1/chat/completions`` and friends).

    Used by load tests as a fast fake upstream; the model name echoes the request's.
    """

    async def handle(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        endpoint = request.match_info["endpoint"]
        mock = MockResponse(settings, endpoint, body, body.get("model", "mock"))
        if mock.status == 200 and body.get("stream"):
            resp = web.StreamResponse(headers=mock.headers)
            await resp.prepare(request)
            async for chunk in mock.iter_chunks():
                await resp.write(chunk)
            await resp.write_eof()
            return resp
        return web.Response(body=await mock.read(), status=mock.status, headers=mock.headers)

    app = web.Application()
    app.router.add_post("/v1/{endpoint:.+}", handle)
    return app
