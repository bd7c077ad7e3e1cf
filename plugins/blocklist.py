"""A keyword / regular-expression block list: matching requests are rejected (400).

``BlockList`` (built-in name ``blocklist``) settings:

- ``keywords``: words or phrases, matched as whole words;
- ``patterns``: regular expressions (Python syntax, ``re.search``);
- ``case_sensitive``: default false;
- ``message``: the error message (default names the rule number, never the matched text);
- ``status`` (default 400) and ``code`` (default ``content_blocked``).

Every prompt string is checked: chat message content (text parts and tool-call arguments
included), ``prompt``, ``input``.
"""

from __future__ import annotations

import re

from plugins._text import iter_texts


class BlockList:
    """Before each request: reject it when any prompt text matches a rule."""

    def __init__(self, keywords: list[str] | None = None, patterns: list[str] | None = None,
                 case_sensitive: bool = False, message: str | None = None, status: int = 400,
                 code: str = "content_blocked"):
        flags = 0 if case_sensitive else re.IGNORECASE
        rules = [r"(?<!\w)" + re.escape(k) + r"(?!\w)" for k in (keywords or ())]
        rules += list(patterns or ())
        if not rules:
            raise ValueError("blocklist needs keywords or patterns")
        self.rules = [re.compile(r, flags) for r in rules]
        self.message = message
        self.status = status
        self.code = code

    def match(self, text: str) -> int | None:
        """Index of the first rule ``text`` matches, or ``None``."""
        for i, rule in enumerate(self.rules):
            if rule.search(text):
                return i
        return None

    async def before_request(self, ctx):
        from gateway.plugins import Verdict

        if ctx.body is None:
            return None
        for text in iter_texts(ctx.endpoint, ctx.body):
            hit = self.match(text)
            if hit is not None:
                return Verdict.reject(self.message or f"The request was blocked by content policy (rule {hit + 1}).",
                                      status=self.status, code=self.code)
        return None
