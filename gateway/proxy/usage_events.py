"""Usage from the typed event streams of audio transcription and image generation.

``stream: true`` on ``/v1/audio/transcriptions`` (and translations), ``/v1/images/generations``
and ``/v1/images/edits``, and ``stream_format: sse`` on ``/v1/audio/speech``, answer with events
whose ``type`` says what each is (``transcript.text.delta`` … ``transcript.text.done``;
``image_generation.partial_image`` … ``image_generation.completed``; ``speech.audio.delta`` …
``speech.audio.done``); the final event carries the ``usage``
(``input_tokens``/``output_tokens``). ``UsageEvents`` relays the events byte for byte and reads
each once for that usage, the first output (TTFT) and the arrival of each piece (ITL). A stream
that ends before its final event is cut short (the relay then tells the client in-band).
"""

from __future__ import annotations

import orjson

from gateway.core.context import RequestContext, Usage
from gateway.core.errors import GatewayError
from gateway.core.sse import SSESplitter, encode_data_event, event_json

# The endpoints whose streams are these events (their bodies name ``stream`` as JSON or a form field).
EVENT_ENDPOINTS = frozenset({"audio/transcriptions", "audio/translations", "images/generations", "images/edits",
                             "audio/speech"})
_FINAL = frozenset({"transcript.text.done", "image_generation.completed", "image_edit.completed", "speech.audio.done"})
_PIECES = frozenset({"transcript.text.delta", "image_generation.partial_image", "image_edit.partial_image",
                     "speech.audio.delta"})


def events_observer(ctx: RequestContext) -> UsageEvents | None:
    """The observer for a stream of ``ctx``'s endpoint, if it is one of these."""
    return UsageEvents(ctx) if ctx.endpoint in EVENT_ENDPOINTS else None


class UsageEvents:
    """The relay's observer (as ``gateway.proxy.streaming.StreamTee``): ``feed`` returns whole
    events unchanged (any run of a backend's key masked in an error event), ``done`` once the final
    event passed, ``upstream_error`` for an error event."""

    __slots__ = ("_ctx", "_split", "done", "upstream_error")
    END = "its final event"

    def __init__(self, ctx: RequestContext):
        self._ctx = ctx
        self._split = SSESplitter()
        self.done = False
        self.upstream_error: dict | None = None

    def feed(self, data: bytes, now: float) -> bytes:
        events = self._split.feed(data)
        for raw in events:
            self._observe(raw, now)
        out = events[0] if len(events) == 1 else b"".join(events)
        runtime = self._ctx.runtime
        if runtime is not None and runtime.secrets:  # an error event may echo the backend's key
            out = runtime.secrets.mask_error_runs(out)
        return out

    def tail(self) -> bytes:
        return self._split.tail()

    @staticmethod
    def error_event(exc: GatewayError) -> bytes:
        return encode_data_event(orjson.loads(exc.body()))

    def _observe(self, raw: bytes, now: float) -> None:
        event = event_json(raw)
        if event is None:
            return
        kind = event.get("type")
        if type(kind) is not str:  # not an event of these streams: relayed as it came, unread
            kind = None
        ctx = self._ctx
        if kind in _PIECES:
            if ctx.t_first_token is None:
                ctx.t_first_token = now
            ctx.chunk_times.append(now)
            delta = event.get("delta")
            if isinstance(delta, str):
                ctx.completion_text.append(delta)
        elif kind in _FINAL:  # whole now: a client that hangs up after it is no 499 (``outcome.client_closed``)
            self.done = ctx.stream_done = True
            usage = event.get("usage")
            if isinstance(usage, dict):
                ctx.usage = Usage.from_any(usage)
            if ctx.t_first_token is None:
                ctx.t_first_token = now
        elif kind == "error" or "error" in event:
            error = event.get("error", event)
            self.upstream_error = error if isinstance(error, dict) else {"message": str(error)}
