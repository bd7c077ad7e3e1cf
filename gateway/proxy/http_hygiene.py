"""What every response carries, and how malformed HTTP is logged.

``secure_headers`` (a response hook, run on ``on_response_prepare`` by ``build_app``) drops the
``Server`` header aiohttp adds (it names the Python and aiohttp versions, a gift to anyone
matching versions to known bugs) and adds ``X-Content-Type-Options: nosniff`` so a browser
never guesses a script or a page out of a JSON body or a relayed upstream error.

``ProtocolErrorLog`` is the logger aiohttp's connection handler reports to. An unparsable
request (an unknown method, an oversized header, ``Content-Length`` with chunked encoding,
TLS sent to the plain port) is answered 400 by aiohttp before any route runs; a body that
cannot be decoded (a broken ``Content-Encoding`` or chunk) is answered 400 by the handler that
reads it, and aiohttp reports it again when it drains the rest. aiohttp would log an ERROR with a
traceback for each, so any unauthenticated client could flood the log. Here
each is counted (``count``) and summarised in at most one WARNING per ``interval_s``; any other
report (a real failure inside a handler) goes to the log as before.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

_NOSNIFF = ("X-Content-Type-Options", "nosniff")


def secure_headers(request: web.Request, response: web.StreamResponse) -> None:
    """A response hook (``gateway.app`` runs it on ``on_response_prepare``): no ``Server`` header,
    ``nosniff`` on every response."""
    headers = response.headers
    headers.popall("Server", None)
    headers[_NOSNIFF[0]] = _NOSNIFF[1]


class ProtocolErrorLog(logging.LoggerAdapter):
    """aiohttp's server logger (``AppRunner(logger=...)``): malformed requests become a counter
    and a rate-limited warning; everything else passes through to ``logger``."""

    def __init__(self, logger: logging.Logger | None = None, interval_s: float = 60.0):
        super().__init__(logger or logging.getLogger("aiohttp.server"), {})
        self.interval_s = interval_s
        self.count = 0  # malformed requests answered since start
        self._reported = 0  # count at the last warning
        self._next_warning = 0.0
        self._last = ""

    def log(self, level: int, msg, *args, **kwargs) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, tuple):
            exc = exc[1]
        if not isinstance(exc, (HttpProcessingError, RequestPayloadError)):
            super().log(level, msg, *args, **kwargs)
            return
        self.count += 1
        self._last = type(exc).__name__
        now = time.monotonic()
        if now >= self._next_warning:
            self._next_warning = now + self.interval_s
            new, self._reported = self.count - self._reported, self.count
            self.logger.warning("answered %d malformed HTTP request(s) with 400 (last: %s; %d since start); "
                                "further ones are summarised at most every %g s",
                                new, self._last, self.count, self.interval_s)
