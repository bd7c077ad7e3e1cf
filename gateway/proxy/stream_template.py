"""Templates of content chunks: read a stream's chunks without parsing each one.

In an OpenAI-format stream the content chunks differ from one another only inside their text:
the same id, model, fingerprint and nulls around ``"content":"…"`` (chat) or ``"text":"…"``
(text completions). ``learn`` takes a chunk the tee has parsed and, when it is such a chunk,
returns a ``Template``: its event's bytes before and after the text. An event that consists of
``pre``, one valid JSON string and ``suf`` is then the same chunk with that text, so the tee
decodes only the string (``orjson`` on the quoted bytes, which also checks that they are one
string: an unescaped quote, a control character or invalid UTF-8 in between fails it, and the
event is parsed whole instead).

That this holds is checked, not assumed: before a template is kept, its bytes around another
text are parsed and must give the learned chunk with that text and nothing else changed. JSON
being what it is, any other valid string in that place then gives the chunk with that string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

_CHAT_TEXT = re.compile(rb'"content"\s*:\s*"')
_TEXT = re.compile(rb'"text"\s*:\s*"')
_COMPACT = {True: b'"content":"', False: b'"text":"'}  # how most servers write them
_PROBE = "\u2063probe\u2063"  # any text would do; one no model writes makes a mistake visible
_PROBE_JSON = orjson.dumps(_PROBE)[1:-1]
_BACKSLASH = 0x5C


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs several times more
class Template:
    """The bytes of a content chunk's event around its text (``pre`` ends with the opening
    quote, ``suf`` starts with the closing one); ``start``/``after``: their lengths. With
    usage stripped, ``pre_stripped`` or ``suf_stripped`` is that part without the
    ``,"usage":null`` member (the one of the two that holds it)."""

    pre: bytes
    suf: bytes
    start: int
    after: int
    pre_stripped: bytes | None = None
    suf_stripped: bytes | None = None
    body_suf: bytes = b""  # ``suf`` without its blank line: an event as ``split`` leaves it
    body_after: int = 0


def learnable(chunk: dict) -> bool:
    """Cheap first look: a one-choice chunk with a text, nothing else that counts as output, no
    finish reason and no usage (the tee calls ``learn`` only then)."""
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1 or chunk.get("usage"):
        return False
    choice = choices[0]
    if type(choice) is not dict or choice.get("finish_reason"):
        return False
    delta = choice.get("delta")
    if delta is None:
        return type(choice.get("text")) is str
    return (type(delta) is dict and "role" not in delta and type(delta.get("content")) is str
            and not (delta.get("tool_calls") or delta.get("reasoning_content") or delta.get("refusal")))


def learn(raw: bytes, data: bytes, chunk: dict, usage_null: bytes | None) -> Template | None:
    """The template of ``raw`` (one event, ``chunk`` parsed from its ``data``), or None.

    ``chunk`` must be ``learnable``. ``usage_null``: the member stripped from each chunk when
    the client did not ask for usage (None: nothing is stripped)."""
    if len(raw) != len(data) + 8 or not raw.startswith(b"data: ") or not raw.endswith(b"\n\n"):
        return None  # only a one-line ``data:`` event, LF-terminated
    chat = chunk["choices"][0].get("delta") is not None
    start = _text_start(raw, chat)
    if start < 0:
        return None
    end = _string_end(raw, start)
    if end < 0:
        return None
    pre, suf = raw[:start], raw[end:]
    # The probe: this text's place holding another text must parse as this very chunk with that
    # text there, and nothing else changed (checked by putting the text back and comparing).
    try:
        probe = orjson.loads(pre[6:] + _PROBE_JSON + suf[:-2])
        choice = probe["choices"][0]
        holder = choice["delta"] if chat else choice
        key = "content" if chat else "text"
        if holder[key] != _PROBE:
            return None
        holder[key] = (chunk["choices"][0]["delta"] if chat else chunk["choices"][0])[key]
    except (orjson.JSONDecodeError, LookupError, TypeError):
        return None
    if probe != chunk:
        return None
    pre_stripped = suf_stripped = None
    if usage_null is not None and chunk.get("usage", None) is None:
        # The tee drops the first ``,"usage":null`` of each chunk; none can lie in the text.
        at = raw.find(usage_null)
        if 0 <= at and at + len(usage_null) <= start:
            pre_stripped = pre[:at] + pre[at + len(usage_null):]
        elif at >= end:
            at -= end
            suf_stripped = suf[:at] + suf[at + len(usage_null):]
        elif at >= 0:
            return None
    return Template(pre, suf, len(pre), len(suf), pre_stripped, suf_stripped, suf[:-2], len(suf) - 2)


def _text_start(raw: bytes, chat: bool) -> int:
    """Where the one ``"content":"`` (``"text":"``) string of ``raw`` begins (-1: none, or several)."""
    compact = _COMPACT[chat]
    at = raw.find(compact)
    if at >= 0:
        return at + len(compact) if raw.find(compact, at + 1) < 0 else -1
    found = list((_CHAT_TEXT if chat else _TEXT).finditer(raw))  # written with spaces
    return found[0].end() if len(found) == 1 else -1


def _string_end(raw: bytes, start: int) -> int:
    """Index of the quote that closes the JSON string whose text begins at ``start`` (-1: none)."""
    end = raw.find(b'"', start)
    if end > start and raw[end - 1] != _BACKSLASH:  # most texts: no escape before the quote
        return end
    at = start
    while True:
        end = raw.find(b'"', at)
        if end < 0:
            return -1
        back = end
        while back > start and raw[back - 1] == _BACKSLASH:
            back -= 1
        if (end - back) % 2 == 0:  # not escaped
            return end
        at = end + 1
