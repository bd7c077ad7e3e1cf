"""The seam for inbound protocols: APIs other than Chat Completions that clients speak to the gateway.

The gateway's request path, its features and most backends speak OpenAI's Chat Completions. An
inbound protocol (Anthropic's Messages on ``/v1/messages``, OpenAI's Responses on
``/v1/responses``) plugs in as one ``Inbound`` object, registered by endpoint in
``gateway.inbound.INBOUND``. ``ProxyHandlers.proxy`` puts it on ``ctx.inbound`` (None for every
other endpoint: the Chat Completions path pays one dict lookup and nothing else), and the proxy
asks it four things:

- ``legs(ctx, body)`` → a function ``candidate → Leg``, called once per routing target (a
  model may mix backend kinds, so this is decided per attempt): a target whose provider lists
  the endpoint in its ``native_paths`` gets the client's body as it is (under the target's
  model name, ``path`` the client's endpoint, ``headers`` such as ``anthropic-beta``), and its
  answer is relayed as it comes; any other target gets the request translated to
  ``chat/completions`` (``parsed`` the chat body, built once per request and shared by such
  targets) and a ``wrap`` that turns the chat answer — JSON or the chunk stream — into the
  protocol's (``TranslatedAnswer``), or an ``answer`` made in process with nothing sent. Raise
  ``InvalidRequestError`` for a request the protocol cannot translate (400 in its shape).
- ``observe_json(ctx, body)`` / ``observer(ctx)``: read the protocol's own answer for the
  request's row — the JSON body, or a stream through a ``StreamObserver`` (the relay's tee for
  this protocol: usage, TTFT, chunk times, finish reason, the end of the stream). Since
  translated answers are already in the protocol's shape when the relay sees them, one observer
  serves native and translated targets alike.
- ``error_body(exc)`` / ``upstream_error(status, body)``: the gateway's own errors, and a
  backend's error response (OpenAI's shape, the protocol's own, or anything), in the protocol's
  error shape; ``StreamObserver.error_event(exc)`` says a stream's failure in-band;
  ``not_json(reason)`` the protocol's words for a body that is not JSON.

Upstream error responses stay untranslated until the relay (``TranslatedAnswer`` passes them
through), so the attempt loop classifies them (context length, 5xx, 429) exactly as for chat.

To add a protocol: a package ``gateway/inbound/<name>/`` with a class implementing ``Inbound``
(pure translation, no I/O), one line in ``INBOUND`` per endpoint it serves, and, on a provider
whose backends speak it natively, the endpoint in that adapter's ``native_paths``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError, UpstreamError
from gateway.core.upstream import Translator, UpstreamResponse, translated

CHAT = "chat/completions"
SSE = "text/event-stream"


# A stream encoder: ``feed(chat chunk SSE bytes)`` → the protocol's SSE bytes; ``finish()`` → what
# the end of the upstream body adds (nothing for a stream cut short).
Encoder = Translator


class StreamObserver(Protocol):
    """The relay's view of a stream in the protocol (as ``gateway.proxy.streaming.StreamTee`` is
    for chat chunks): ``feed(data, now)`` → bytes to send (whole events), ``tail()`` → an
    unterminated last event, ``done`` once the stream ended as the protocol ends it,
    ``upstream_error`` an in-band error event's payload, ``error_event(exc)`` the in-band event
    telling the client the stream failed, ``END`` what a complete stream reaches (named in the
    truncation error)."""

    END: str
    done: bool
    upstream_error: dict | None

    def feed(self, data: bytes, now: float) -> bytes: ...

    def tail(self) -> bytes: ...

    def error_event(self, exc: GatewayError) -> bytes: ...


@dataclass(slots=True)
class Leg:
    """How one target is asked: ``path`` below ``/v1/``, ``raw`` (bytes; ``b""`` when the
    target encodes ``parsed`` itself), ``parsed``, extra ``headers`` (or None), and ``wrap``:
    None for a native answer, else what turns the chat answer into the protocol's. ``answer``:
    the answer made in process, nothing sent (Anthropic's token count on a chat backend).
    ``query``: the query string sent (None: the client's, as a native target takes it; a
    translated target speaks another API, whose parameters the client's are not)."""

    path: str
    raw: bytes
    parsed: dict[str, Any]
    headers: Mapping[str, str] | None = None
    wrap: Callable[[UpstreamResponse], UpstreamResponse] | None = None
    answer: UpstreamResponse | None = None
    query: str | None = None


class Inbound(Protocol):
    """One inbound protocol (see the module docstring)."""

    name: str

    def legs(self, ctx: RequestContext, body: Any) -> Callable[[Any], Leg]: ...

    def observe_json(self, ctx: RequestContext, body: bytes, parsed: Any = None) -> None:
        """What a whole answer tells the row; ``parsed``: ``body`` already decoded (the attempt
        loop's check of a native answer), else decoded here."""

    def observer(self, ctx: RequestContext) -> StreamObserver: ...

    def error_body(self, exc: GatewayError) -> bytes: ...

    def upstream_error(self, status: int, body: bytes) -> bytes: ...

    def not_json(self, reason: str) -> str: ...


class TranslatedAnswer:
    """A chat completions answer seen as the protocol's: a successful JSON body through
    ``json``, a stream through a fresh ``encoder()``; error responses unchanged (the relay
    renders them with ``Inbound.upstream_error``). Status and headers are the backend's, but
    for ``stream``: a backend that answered a stream request with JSON (it ignored ``stream``)
    is sent as the events the client asked for, its answer re-cut into chat chunks
    (``chat_chunks``) for the encoder."""

    __slots__ = ("_resp", "_json", "_encoder", "_recut", "status", "headers")

    def __init__(self, resp: UpstreamResponse, json: Callable[[bytes], bytes], encoder: Callable[[], Encoder],
                 stream: bool = False):
        self._resp = resp
        self._json = json
        self._encoder = encoder
        self.status = resp.status
        headers = resp.headers
        self._recut = stream and resp.status < 400 and not headers.get("Content-Type", "").startswith(SSE)
        self.headers = headers if not self._recut else \
            {**{k: v for k, v in headers.items() if k.lower() != "content-type"}, "Content-Type": SSE}

    async def read(self) -> bytes:
        body = await self._resp.read()
        return body if self.status >= 400 else self._json(body)

    def iter_chunks(self) -> AsyncIterator[bytes]:
        return translated(self._resp.iter_chunks() if not self._recut else self._chunks(), self._encoder())

    async def _chunks(self) -> AsyncIterator[bytes]:
        yield chat_chunks(await self._resp.read())

    def close(self) -> None:
        self._resp.close()

    def release(self) -> None:
        self._resp.release()


def chat_chunks(body: bytes) -> bytes:
    """A chat completion (its first choice) as the chunk stream that would have said it: one
    delta with its reasoning, text and tool calls, one with the finish reason, the usage, ``[DONE]``."""
    try:
        chat = orjson.loads(body)
    except orjson.JSONDecodeError:
        chat = None
    choices = chat.get("choices") if isinstance(chat, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamError("the backend answered a stream request with something other than a chat completion")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        message = {}
    head = {"id": chat.get("id"), "object": "chat.completion.chunk", "model": chat.get("model")}
    delta = {k: v for k, v in message.items() if k in ("role", "content", "reasoning_content", "reasoning")}
    calls = [{**call, "index": i} for i, call in enumerate(message.get("tool_calls") or ()) if isinstance(call, dict)]
    if calls:
        delta["tool_calls"] = calls
    ending = {k: v for k, v in choice.items() if k != "message"}  # finish_reason, vLLM's stop_reason
    chunks = [{**head, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
              {**head, "choices": [{**ending, "index": 0, "delta": {}}]}]
    if isinstance(chat.get("usage"), dict):
        chunks.append({**head, "choices": [], "usage": chat["usage"]})
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


__all__ = ["CHAT", "SSE", "Encoder", "Inbound", "Leg", "StreamObserver", "TranslatedAnswer", "chat_chunks"]
