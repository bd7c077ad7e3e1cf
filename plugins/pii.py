"""PII redaction: e-mail addresses, phone numbers and payment card numbers.

``PIIRedaction`` (built-in name ``pii``) rewrites every text field of a request (``plugins._text``:
message content and names, tool calls and definitions, ``prompt``, ``input``, ``instructions``,
``system``) before it goes upstream (and so before the cache and the request-body log see it).
Settings:

- ``emails``, ``phones``, ``cards``: which kinds to mask (all true by default);
- ``replacement``: the mask, ``{kind}`` becoming ``EMAIL``, ``PHONE`` or ``CARD``
  (default ``[{kind}]``).

What counts: an e-mail is ``local@domain.tld``; a card is 13-19 digits that pass the Luhn check
(so order numbers and the like stay), with spaces or dashes between them, or one kind of ``.``,
``/`` or ``_`` between groups of three or more digits; a phone is
an international number (``+`` and 7-15 digits: ``+44 20 7946 0958``, ``+1-555-123-4567``)
or a North American one (``(555) 123-4567``, ``555-123-4567``, ``555.123.4567``). Bare digit
runs without separators (``5551234567``) are not treated as phones, nor are dates. Matching
sees through zero-width characters, combining marks and fullwidth forms (``alice＠example.com``,
digits split by zero-width spaces); only the matching stretch of the text is replaced.

``redact_for_log`` is the same masking as a ``telemetry.bodies.redact`` hook
(``redact: "plugins.pii:redact_for_log"``): it masks logged request *and response* bodies,
string values inside JSON included.
"""

from __future__ import annotations

import re

import orjson

from gateway.plugin_api import PluginRequest, Verdict
from plugins._fold import fold, fold_offsets, original_span
from plugins._text import map_texts

EMAIL_RE = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
CARD_RE = re.compile(r"(?<![\d-])\d(?:[ .\-/_]?\d){12,18}(?![\d])")
PHONE_RE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}"  # international
    r"|(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}"  # North American
    r")(?![\w])")
_CARD_SEPARATORS = re.compile(r"[ .\-/_]")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a digit string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_like(candidate: str) -> bool:
    """A stretch of digits and separators that is a card number: 13-19 digits passing Luhn;
    separators other than spaces and dashes (``.``, ``/``, ``_``) only between groups of three
    or more digits, all the same (so decimals and dates stay)."""
    digits = _CARD_SEPARATORS.sub("", candidate)
    if not (13 <= len(digits) <= 19 and digits.isascii() and luhn_ok(digits)):
        return False
    seps = set(_CARD_SEPARATORS.findall(candidate))
    if seps <= {" ", "-"}:
        return True
    return len(seps) == 1 and all(len(g) >= 3 for g in _CARD_SEPARATORS.split(candidate))


def card_length(candidate: str) -> int:
    """The length of the card number ``candidate`` (a CARD_RE match) starts with, or 0: the
    whole match, else the match without its last groups (``4111 1111 1111 1111 12`` followed by
    ``/25`` is a card and the start of a date)."""
    if card_like(candidate):
        return len(candidate)
    ends = [m.start() for m in _CARD_SEPARATORS.finditer(candidate)]
    for end in reversed(ends):
        if card_like(candidate[:end]):
            return end
    return 0


class Redactor:
    """Masks the enabled kinds in a string (``redact(text)``).

    Matching runs on a folded copy of the text (``plugins._fold``: zero-width characters and
    combining marks dropped, fullwidth ``＠`` and digits made plain), so ``alice＠example.com`` or a
    card number with zero-width spaces between its digits is found; what is masked is the
    matching stretch of the original text, and a text without a match is returned as it came.
    """

    def __init__(self, emails: bool = True, phones: bool = True, cards: bool = True,
                 replacement: str = "[{kind}]"):
        self.emails, self.phones, self.cards = emails, phones, cards
        self.masks = {kind: replacement.format(kind=kind) for kind in ("EMAIL", "PHONE", "CARD")}

    def _find(self, text: str) -> list[tuple[int, int, str]]:
        """``(start, end, mask)`` of every match in ``text``, in order, not overlapping. Kinds
        are looked for in turn (e-mails, cards, phones), each outside the earlier ones' matches."""
        found: list[tuple[int, int, str]] = []
        work = text

        def take(start: int, end: int, kind: str) -> None:
            nonlocal work
            found.append((start, end, self.masks[kind]))
            work = work[:start] + "\0" * (end - start) + work[end:]  # later kinds skip this stretch

        if self.emails and "@" in work:
            for m in list(EMAIL_RE.finditer(work)):
                take(m.start(), m.end(), "EMAIL")
        if self.cards:
            for m in list(CARD_RE.finditer(work)):
                n = card_length(m.group(0))
                if n:
                    take(m.start(), m.start() + n, "CARD")
        if self.phones:
            for m in list(PHONE_RE.finditer(work)):
                if 7 <= sum(ch.isdigit() for ch in m.group(0)) <= 15:
                    take(m.start(), m.end(), "PHONE")
        found.sort()
        return found

    def redact(self, text: str) -> str:
        plain = text.isascii()
        folded = text if plain else fold(text, casefold=False)
        spans = self._find(folded)
        if not spans:
            return text
        if not plain:
            folded, starts = fold_offsets(text)
            spans = [(*original_span(text, starts, b, e), mask) for b, e, mask in spans]
        out, pos = [], 0
        for start, end, mask in spans:
            if start < pos:  # two folded matches behind one original character
                continue
            out.append(text[pos:start])
            out.append(mask)
            pos = end
        out.append(text[pos:])
        return "".join(out)


_DEFAULT = Redactor()


def redact_text(text: str) -> str:
    """Mask every kind with the default settings."""
    return _DEFAULT.redact(text)


def _redact_json(node):
    if isinstance(node, str):
        return _DEFAULT.redact(node)
    if isinstance(node, list):
        return [_redact_json(v) for v in node]
    if isinstance(node, dict):
        return {k: _redact_json(v) for k, v in node.items()}
    return node


def redact_for_log(kind: str, text: str) -> str:
    """``telemetry.bodies.redact`` hook: JSON bodies have their string values masked (the JSON
    stays valid); any other text is masked as a whole."""
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            return orjson.dumps(_redact_json(orjson.loads(text))).decode()
        except orjson.JSONDecodeError:
            pass
    return _DEFAULT.redact(text)


class PIIRedaction:
    """Before each request: mask PII in its text fields (a ``modify`` verdict when anything was masked)."""

    def __init__(self, emails: bool = True, phones: bool = True, cards: bool = True,
                 replacement: str = "[{kind}]"):
        self.redactor = Redactor(emails, phones, cards, replacement)

    async def before_request(self, request: PluginRequest) -> Verdict | None:
        if request.body is not None and map_texts(request.endpoint, request.body, self.redactor.redact):
            return Verdict.modify()
        return None
