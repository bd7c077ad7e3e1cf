"""Server-sent events, byte-exact: split an upstream byte stream into whole events.

Follows the WHATWG HTML "server-sent events" parsing rules for line endings (CRLF, LF, CR)
and fields (``data:``, ``event:``, ``:`` comments). The splitter keeps the raw bytes of each
event, terminator included, so the gateway can forward exactly what the upstream sent while
also reading the event's ``data``. Reads may split an event anywhere (even inside a
multi-byte UTF-8 character) or carry several events; only the incomplete tail is held.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

# A blank line ends an event: a line ending followed by another. A lone CR counts as a line
# ending only when it is not the first half of CRLF.
_BLANK_LINE = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r)")


class SSESplitter:
    """Incrementally split bytes into complete raw events.

    ``feed(data) -> list[bytes]``: the complete events (each with its terminating blank line)
    that ``data`` completes, in order; incomplete bytes are kept for the next call.
    ``tail()`` returns and clears whatever is left when the stream ends.
    """

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        events: list[bytes] = []
        start = 0
        if b"\r" not in buf:  # the common case: LF-only streams
            while True:
                end = buf.find(b"\n\n", start)
                if end < 0:
                    break
                events.append(buf[start:end + 2])
                start = end + 2
        else:
            for match in _BLANK_LINE.finditer(buf):
                end = match.end()
                if end == len(buf) and buf.endswith(b"\r"):
                    break  # may be the CR of a CRLF whose LF has not arrived yet
                events.append(buf[start:end])
                start = end
        self._buf = buf[start:] if start < len(buf) else b""
        return events

    @property
    def pending(self) -> bool:
        """Whether bytes of an incomplete event are held."""
        return bool(self._buf)

    def tail(self) -> bytes:
        out, self._buf = self._buf, b""
        return out


def event_data(raw: bytes) -> bytes | None:
    """The ``data`` of a raw event: its ``data:`` lines joined by LF, or None if it has none.

    One leading space after the colon is removed, per the spec. Comment lines (``:``) and
    other fields are skipped.
    """
    if raw.startswith(b"data: ") and raw.count(b"\n") <= 2 and b"\r" not in raw:
        return raw[6:].rstrip(b"\n")  # fast path: one data line, LF endings
    parts = []
    for line in raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(parts) if parts else None


def event_json(raw: bytes) -> dict[str, Any] | None:
    """The JSON object a raw event's ``data`` holds, or None (no data, ``[DONE]``, not JSON, not
    an object)."""
    data = event_data(raw)
    return None if not data or data == b"[DONE]" else data_json(data)


def data_json(data: bytes) -> dict[str, Any] | None:
    """The JSON object an event's ``data`` holds, or None (not JSON, not an object)."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def event_name(raw: bytes) -> bytes | None:
    """The ``event:`` field of a raw event, or None (which means ``message``)."""
    if not raw.startswith(b"event:") and b"\nevent:" not in raw and b"\revent:" not in raw:
        return None
    for line in raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        if line.startswith(b"event:"):
            return line[6:].strip()
    return None


def encode_data_event(payload: dict[str, Any]) -> bytes:
    """Encode a JSON payload as one ``data:`` event terminated by a blank line."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


DONE_EVENT = b"data: [DONE]\n\n"
