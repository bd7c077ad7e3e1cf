"""Making a facts record safe to store, whatever a request carried: lone surrogates (which
``orjson.dumps`` refuses and UTF-8 cannot encode) become U+FFFD, values JSON cannot hold become
their text, and oversized fields are cut. Each repair names the field it touched
(``sanitized:<field>``, ``truncated:<field>``), so the row says what it lost.

Runs in the serving process, but only on the slow path: the encoder tries the plain
``orjson.dumps`` first and calls these only when it fails or the result is too large.
"""

from __future__ import annotations

import re
from typing import Any

_SURROGATE_RE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"

# The slow path's limits for the JSON part of a record, tried in turn until it fits (bodies and
# the answer travel as raw sections with limits of their own, in ``facts_encode``): characters
# of one string (an error message, a metadata value), entries of one list or dict.
LIMITS = ((64 * 1024, 256), (1024, 64))


def clean_text(text: str) -> str:
    """``text`` with every surrogate code point (unencodable in UTF-8) replaced by U+FFFD."""
    return _SURROGATE_RE.sub(REPLACEMENT, text)


def utf8(text: str) -> tuple[bytes, bool]:
    """``(UTF-8 bytes, sanitized)`` of ``text``; lone surrogates become U+FFFD."""
    try:
        return text.encode(), False
    except UnicodeEncodeError:
        return clean_text(text).encode(), True


def cut_utf8(data: bytes, limit: int) -> bytes:
    """``data`` cut to at most ``limit`` bytes on a UTF-8 character boundary."""
    if len(data) <= limit:
        return data
    end = limit
    while end > 0 and (data[end] & 0xC0) == 0x80:  # a continuation byte: back to its lead byte
        end -= 1
    return data[:end]


class Repair:
    """Repairs JSON-bound values, collecting the flags of what it changed.

    ``limits``: ``(characters, entries)`` to cut strings and lists/dicts to (the record was too
    large), besides sanitising; ``None``: sanitise only.
    """

    def __init__(self, limits: tuple[int, int] | None = None):
        self.limit = limits is not None
        self.string_max, self.items_max = limits or (0, 0)
        self.flags: list[str] = []

    def field(self, name: str, value: Any) -> Any:
        """``value`` made storable; flags ``name`` when it changed."""
        self._sanitized = self._truncated = False
        out = self._value(value)
        if self._sanitized:
            self.flags.append(f"sanitized:{name}")
        if self._truncated:
            self.flags.append(f"truncated:{name}")
        return out

    def _value(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, dict):
            items = list(value.items())
            if self.limit and len(items) > self.items_max:
                items = items[:self.items_max]
                self._truncated = True
            return {self._text(str(k)): self._value(v) for k, v in items}
        if isinstance(value, (list, tuple)):
            seq = list(value)
            if self.limit and len(seq) > self.items_max:
                seq = seq[:self.items_max]
                self._truncated = True
            return [self._value(v) for v in seq]
        fields = getattr(value, "__dataclass_fields__", None)
        if fields is not None:  # Usage, Attempt: their fields as a dict
            return {name: self._value(getattr(value, name)) for name in fields}
        self._sanitized = True  # not JSON (a plugin's object): its text
        return self._text(str(value))

    def _text(self, text: str) -> str:
        if _SURROGATE_RE.search(text) is not None:
            text = clean_text(text)
            self._sanitized = True
        if self.limit and len(text) > self.string_max:
            text = text[:self.string_max]
            self._truncated = True
        return text
