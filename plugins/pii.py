"""PII redaction: e-mail addresses, phone numbers and payment card numbers.

``PIIRedaction`` (built-in name ``pii``) rewrites the message content of every request before it
goes upstream (and so before the cache and the request-body log see it). Settings:

- ``emails``, ``phones``, ``cards``: which kinds to mask (all true by default);
- ``replacement``: the mask, ``{kind}`` becoming ``EMAIL``, ``PHONE`` or ``CARD``
  (default ``[{kind}]``).

What counts: an e-mail is ``local@domain.tld``; a card is 13-19 digits (spaces or dashes
allowed between them) that pass the Luhn check, so order numbers and the like stay; a phone is
an international number (``+`` and 7-15 digits: ``+44 20 7946 0958``, ``+1-555-123-4567``)
or a North American one (``(555) 123-4567``, ``555-123-4567``, ``555.123.4567``). Bare digit
runs without separators (``5551234567``) are not treated as phones, nor are dates.

``redact_for_log`` is the same masking as a ``telemetry.bodies.redact`` hook
(``redact: "plugins.pii:redact_for_log"``): it masks logged request *and response* bodies,
string values inside JSON included.
"""

from __future__ import annotations

import re

import orjson

from plugins._text import map_texts

EMAIL_RE = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
CARD_RE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
PHONE_RE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]?\d{2,4}){1,4}"  # international
    r"|(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}"  # North American
    r")(?![\w])")


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


class Redactor:
    """Masks the enabled kinds in a string (``redact(text)``)."""

    def __init__(self, emails: bool = True, phones: bool = True, cards: bool = True,
                 replacement: str = "[{kind}]"):
        self.emails, self.phones, self.cards = emails, phones, cards
        self.masks = {kind: replacement.format(kind=kind) for kind in ("EMAIL", "PHONE", "CARD")}

    def _card(self, m: re.Match) -> str:
        digits = re.sub(r"[ -]", "", m.group(0))
        return self.masks["CARD"] if 13 <= len(digits) <= 19 and luhn_ok(digits) else m.group(0)

    def _phone(self, m: re.Match) -> str:
        n = sum(ch.isdigit() for ch in m.group(0))
        return self.masks["PHONE"] if 7 <= n <= 15 else m.group(0)

    def redact(self, text: str) -> str:
        if self.emails and "@" in text:
            text = EMAIL_RE.sub(self.masks["EMAIL"], text)
        if self.cards:
            text = CARD_RE.sub(self._card, text)
        if self.phones:
            text = PHONE_RE.sub(self._phone, text)
        return text


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
    """Before each request: mask PII in its message content (a ``modify`` verdict)."""

    def __init__(self, emails: bool = True, phones: bool = True, cards: bool = True,
                 replacement: str = "[{kind}]"):
        self.redactor = Redactor(emails, phones, cards, replacement)

    async def before_request(self, ctx):
        from gateway.plugins import Verdict

        if ctx.body is not None and map_texts(ctx.endpoint, ctx.body, self.redactor.redact):
            return Verdict.modify()
        return None
