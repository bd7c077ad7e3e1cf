"""The built-in deterministic ``mock`` backend.

It answers OpenAI-shaped chat completions, text completions and embeddings in-process (or,
through ``build_mock_app``, as a standalone HTTP server for load tests) so an application can
be tested offline: ``n`` choices, tool calls and structured output valid against the request's
schemas, logprobs, base64 embeddings and OpenAI's 400s for malformed requests
(``gateway.providers.mock.answers`` decides what each choice says, ``gateway.providers.mock.checks`` what is
refused). The same request always yields the same content; ids are unique per response.

Timing is one model for both delivery modes: ``latency_ms`` + ``ttft_ms`` before the first
chunk, ``itl_ms`` before each later one; a non-streamed answer arrives when the stream would
have ended. Embeddings wait ``latency_ms`` only.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from gateway.config.models import MockSettings
from gateway.core.sse import DONE_EVENT, encode_data_event
from gateway.providers.mock.answers import Answer, chat_logprobs, completion_logprobs, plan
from gateway.providers.mock.checks import check_chat, check_completion, error_body
from gateway.providers.mock.vectors import embed

_JSON_HEADERS = {"Content-Type": "application/json"}
_SSE_HEADERS = {"Content-Type": "text/event-stream"}


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


def _check_embeddings(body: dict[str, Any]) -> bytes | None:
    if body.get("input") in (None, "", []):
        return error_body("Missing required parameter: 'input'." if "input" not in body else
                          "'input' must be a non-empty string or array.", "input",
                          "missing_required_parameter" if "input" not in body else "invalid_value")
    fmt = body.get("encoding_format")
    if fmt not in (None, "float", "base64"):
        return error_body(f"Invalid value: {orjson.dumps(fmt).decode()}. Supported values are: 'float' and "
                          "'base64'.", "encoding_format", "invalid_value")
    dims = body.get("dimensions")
    if dims is not None and (not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= 8192):
        return error_body(f"Invalid 'dimensions': expected an integer from 1 to 8192, but got "
                          f"{orjson.dumps(dims).decode()}.", "dimensions", "invalid_value")
    return None


_CHECKS = {"chat/completions": check_chat, "completions": check_completion, "embeddings": _check_embeddings}


class MockResponse:
    """One mock answer with the same surface as an HTTP upstream response.

    ``status`` (int), ``headers`` (dict), ``await read()`` → the whole JSON body,
    ``iter_chunks()`` → SSE event bytes for streamed requests, ``close()``.
    """

    __slots__ = ("status", "headers", "_settings", "_endpoint", "_body", "_model", "_error")

    def __init__(self, settings: MockSettings, endpoint: str, body: dict[str, Any], model: str):
        self._settings = settings
        self._endpoint = endpoint
        self._body = body
        self._model = model
        check = _CHECKS.get(endpoint)
        if check is None:
            self.status = 404
            self._error: bytes | None = error_body(f"mock backend has no /{endpoint}", None, "not_found")
        else:
            self._error = check(body)
            self.status = 400 if self._error is not None else 200
        self.headers = _SSE_HEADERS if self.status == 200 and body.get("stream") else _JSON_HEADERS

    def _plan(self) -> list[Answer]:
        return plan(self._body, self._settings.tokens, self._endpoint == "chat/completions")

    def _steps(self, answers: list[Answer]) -> int:
        step = self._settings.chunk_tokens
        return max((len(a.pieces) + step - 1) // step for a in answers)

    def _usage(self, completion: int) -> dict[str, int]:
        prompt = _prompt_tokens(self._body)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _top_logprobs(self) -> int | None:
        """How many alternatives per token, or ``None`` when logprobs were not asked for."""
        body = self._body
        if self._endpoint == "chat/completions":
            if body.get("logprobs") is not True:
                return None
            top = body.get("top_logprobs")
        else:
            top = body.get("logprobs")
            if top is None or top is False:
                return None
        return top if isinstance(top, int) and not isinstance(top, bool) else 0

    async def read(self) -> bytes:
        s = self._settings
        if self._error is not None:
            return self._error
        if self._endpoint == "embeddings":
            if s.latency_ms:
                await asyncio.sleep(s.latency_ms / 1000)
            return orjson.dumps(self._embeddings())
        answers = self._plan()
        delay = s.latency_ms + s.ttft_ms + s.itl_ms * max(self._steps(answers) - 1, 0)
        if delay:
            await asyncio.sleep(delay / 1000)
        created = int(time.time())
        top = self._top_logprobs()
        chat = self._endpoint == "chat/completions"
        choices = []
        for i, a in enumerate(answers):
            text = "".join(a.pieces)
            if not chat:
                choices.append({"index": i, "text": text, "finish_reason": a.finish_reason,
                                "logprobs": None if top is None else completion_logprobs(a, 0, len(a.pieces), top, 0)})
                continue
            if a.tool is None:
                message: dict[str, Any] = {"role": "assistant", "content": text}
            else:
                message = {"role": "assistant", "content": None, "tool_calls": [
                    {"id": a.call_id, "type": "function", "function": {"name": a.tool, "arguments": text}}]}
            choices.append({"index": i, "message": message, "finish_reason": a.finish_reason,
                            "logprobs": None if top is None else chat_logprobs(a, 0, len(a.pieces), top)})
        out: dict[str, Any] = {"id": f"{'chatcmpl' if chat else 'cmpl'}-mock-{secrets.token_hex(12)}",
                               "object": "chat.completion" if chat else "text_completion", "created": created,
                               "model": self._model, "choices": choices}
        if s.usage:
            out["usage"] = self._usage(sum(len(a.pieces) for a in answers))
        return orjson.dumps(out)

    def _embeddings(self) -> dict[str, Any]:
        inputs = self._body.get("input")
        items = inputs if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else [inputs]
        dims = self._body.get("dimensions") or self._settings.embedding_dims
        as_base64 = self._body.get("encoding_format") == "base64"
        data = []
        for i, item in enumerate(items):
            vector = embed(item, dims)
            if as_base64:  # OpenAI's encoding: little-endian float32, base64
                data.append({"object": "embedding", "index": i,
                             "embedding": base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()})
            else:
                data.append({"object": "embedding", "index": i, "embedding": vector})
        out: dict[str, Any] = {"object": "list", "data": data, "model": self._model}
        if self._settings.usage:
            tokens = sum(len(str(x).split()) for x in items)
            out["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return out

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        s = self._settings
        created = int(time.time())
        chat = self._endpoint == "chat/completions"
        rid = f"{'chatcmpl' if chat else 'cmpl'}-mock-{secrets.token_hex(12)}"
        obj = "chat.completion.chunk" if chat else "text_completion"
        model = self._model
        answers = self._plan()
        top = self._top_logprobs()
        step = s.chunk_tokens
        first_wait = s.latency_ms + s.ttft_ms
        if first_wait:
            await asyncio.sleep(first_wait / 1000)
        if chat:
            for i, a in enumerate(answers):
                delta: dict[str, Any] = {"role": "assistant", "content": ""}
                if a.tool is not None:
                    delta = {"role": "assistant", "content": None, "tool_calls": [
                        {"index": 0, "id": a.call_id, "type": "function",
                         "function": {"name": a.tool, "arguments": ""}}]}
                yield encode_data_event({"id": rid, "object": obj, "created": created, "model": model,
                                         "choices": [{"index": i, "delta": delta, "logprobs": None,
                                                      "finish_reason": None}]})
        offsets = [0] * len(answers)
        for start in range(0, self._steps(answers) * step, step):
            if start and s.itl_ms:
                await asyncio.sleep(s.itl_ms / 1000)
            for i, a in enumerate(answers):
                if start >= len(a.pieces):
                    continue
                text = "".join(a.pieces[start:start + step])
                finish = a.finish_reason if start + step >= len(a.pieces) else None
                if chat:
                    delta = {"content": text} if a.tool is None else \
                        {"tool_calls": [{"index": 0, "function": {"arguments": text}}]}
                    choice = {"index": i, "delta": delta,
                              "logprobs": None if top is None else chat_logprobs(a, start, start + step, top),
                              "finish_reason": finish}
                else:
                    choice = {"index": i, "text": text, "finish_reason": finish,
                              "logprobs": None if top is None else
                              completion_logprobs(a, start, start + step, top, offsets[i])}
                    offsets[i] += len(text)
                yield encode_data_event({"id": rid, "object": obj, "created": created, "model": model,
                                         "choices": [choice]})
        for i, a in enumerate(answers):
            if not a.pieces:
                choice = ({"index": i, "delta": {}, "logprobs": None, "finish_reason": a.finish_reason} if chat
                          else {"index": i, "text": "", "logprobs": None, "finish_reason": a.finish_reason})
                yield encode_data_event({"id": rid, "object": obj, "created": created, "model": model,
                                         "choices": [choice]})
        options = self._body.get("stream_options") or {}
        if s.usage and options.get("include_usage"):
            yield encode_data_event({"id": rid, "object": obj, "created": created, "model": model,
                                     "choices": [], "usage": self._usage(sum(len(a.pieces) for a in answers))})
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
