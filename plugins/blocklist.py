"""A keyword / regular-expression block list: matching requests are rejected (400).

``BlockList`` (built-in name ``blocklist``) settings:

- ``keywords``: words or phrases, matched as whole words;
- ``patterns``: regular expressions (Python syntax, ``re.search``);
- ``case_sensitive``: default false;
- ``message``: the error message (default names the rule number, never the matched text);
- ``status`` (default 400) and ``code`` (default ``content_blocked``).

Every text field of the request is checked (``plugins._text``: message content and names, tool
calls, tool definitions, ``prompt``, ``input``, ``instructions``, ``system``), and on a
normalised copy (``plugins._fold``), so invisible, decorated or look-alike characters do not
hide a match (an invisible character between two words also counts as a space). A keyword is
folded the same way and matches with any run of whitespace, punctuation or underscores between
its words (``project nightingale`` matches ``Project_Nightingale`` and
``project\\nnightingale``). A pattern is tried on the text as sent, on the folded text with
whitespace runs squeezed to one space, and on the folded text with only its words left
(separators squeezed to one space).
"""

from __future__ import annotations

import re

from gateway.plugin_api import PluginRequest, Verdict
from plugins._fold import fold, space_invisibles, squeeze_spaces, words_only
from plugins._text import iter_texts

_WORD = re.compile(r"[^\W_]+")


def keyword_rule(keyword: str, casefold: bool) -> str:
    """The regular expression a keyword becomes, for the folded text: its words in order, any
    separator run between them, whole words at its ends."""
    folded = fold(keyword.strip(), casefold)
    words = list(_WORD.finditer(folded))
    if not words:
        return re.escape(folded)
    parts = [re.escape(folded[: words[0].start()])]
    for i, m in enumerate(words):
        if i:
            parts.append(r"[\W_]+")
        parts.append(re.escape(m.group(0)))
    parts.append(re.escape(folded[words[-1].end():]))
    head = r"(?<![^\W_])" if words[0].start() == 0 else ""
    tail = r"(?![^\W_])" if words[-1].end() == len(folded) else ""
    return head + "".join(parts) + tail


class BlockList:
    """Before each request: reject it when any text of it matches a rule."""

    def __init__(self, keywords: list[str] | None = None, patterns: list[str] | None = None,
                 case_sensitive: bool = False, message: str | None = None, status: int = 400,
                 code: str = "content_blocked"):
        flags = 0 if case_sensitive else re.IGNORECASE
        self.casefold = not case_sensitive
        keywords = [k for k in (keywords or ()) if k.strip()]
        # (rule, matched on the folded text only?) in config order: keywords first, then patterns
        self.rules = [(re.compile(keyword_rule(k, self.casefold), flags), True) for k in keywords]
        self.rules += [(re.compile(p, flags), False) for p in (patterns or ())]
        if not self.rules:
            raise ValueError("blocklist needs keywords or patterns")
        self.message = message
        self.status = status
        self.code = code

    def match(self, text: str) -> int | None:
        """Index of the first rule ``text`` matches, or ``None``."""
        folded = squeeze_spaces(fold(text, self.casefold))
        # The text as sent and its words-only form are tried only where they differ from the
        # folded one (for plain ASCII prose they mostly do not).
        as_sent = text.lower() if self.casefold and text.isascii() else text
        as_sent = None if as_sent == folded else text
        words = ""
        # Invisible characters dropped glue their neighbours together; read as spaces, they may
        # separate the words of a keyword (``project\u200bnightingale``).
        spaced = space_invisibles(text)
        if spaced is not None:
            spaced = squeeze_spaces(fold(spaced, self.casefold))
            spaced = None if spaced == folded else spaced
        for i, (rule, folded_only) in enumerate(self.rules):
            if rule.search(folded) or spaced is not None and rule.search(spaced):
                return i
            if folded_only:
                continue
            if as_sent is not None and rule.search(as_sent):
                return i
            if words == "":
                words = words_only(folded)
                words = None if words == folded else words
            if words is not None and rule.search(words):
                return i
        return None

    async def before_request(self, request: PluginRequest) -> Verdict | None:
        if request.body is None:
            return None
        for text in iter_texts(request.endpoint, request.body):
            hit = self.match(text)
            if hit is not None:
                return Verdict.reject(self.message or f"The request was blocked by content policy (rule {hit + 1}).",
                                      status=self.status, code=self.code)
        return None
