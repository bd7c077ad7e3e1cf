"""Which paths below ``/v1/`` the proxy forwards, and upstream URLs that stay inside a backend.

A pass-through request is sent to ``{base_url}/{endpoint}`` with the backend's own key, so a
path that climbs out of ``base_url`` (``/v1/../../admin``, ``%2e%2e``, ``..%2f``) would reach
whatever else the backend serves. Two checks close that, one at each edge:

- ``clean_endpoint(raw_path)`` looks at the request target exactly as the client wrote it
  (before any decoding) and admits only plain segments: no empty, ``.`` or ``..`` segment, no
  backslash, no character outside a URL path, and no percent-encoded ``/``, ``\\``, ``.``,
  ``%``, ``?``, ``#`` or control character (each of these either changes the path once a later
  hop decodes it, or changes what the forwarded URL means).
- ``BaseURL(base_url).join(path, query)`` builds the upstream URL and refuses any result that
  is not below ``base_url``'s own path on its own host, whatever the adapter or caller passed in.
"""

from __future__ import annotations

import re
from functools import lru_cache

from yarl import URL

from gateway.errors import NotFoundError

_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})"
_ENDPOINT = re.compile(rf"{_PCHAR}+(?:/{_PCHAR}+)*")
# Encoded "/", "%", ".", "#", "?", "\" and control characters (C0 and DEL).
_BAD_ESCAPE = re.compile(r"%(?:2[35EeFf]|3[Ff]|5[Cc]|[01][0-9A-Fa-f]|7[Ff])")
# In a built upstream URL (after yarl has normalised it): encoded "/", "\" or "%", or a backslash.
_BAD_OUTBOUND = re.compile(r"%(?:2[5Ff]|5[Cc])|\\")
_DOT_SEGMENT = re.compile(r"(?:^|/)\.\.?(?:/|$)")


@lru_cache(maxsize=1024)  # a pure function of the path; clients repeat a handful of paths
def clean_endpoint(raw_path: str) -> bool:
    """Whether the raw request target ``raw_path`` (path and query, as received) names a clean
    endpoint below ``/v1/``."""
    path = raw_path.partition("?")[0]
    if path[:1] != "/":  # absolute form (``POST http://host/v1/... HTTP/1.1``): drop scheme and host
        scheme, sep, rest = path.partition("://")
        path = "/" + rest.partition("/")[2] if sep else path
    if not path.startswith("/v1/"):
        return False
    tail = path[4:]
    if _ENDPOINT.fullmatch(tail) is None:
        return False
    if "%" in tail and _BAD_ESCAPE.search(tail) is not None:
        return False
    return "." not in tail or _DOT_SEGMENT.search(tail) is None


def unknown_url(method: str, raw_path: str) -> NotFoundError:
    """The 404 for a request target ``clean_endpoint`` refused (OpenAI's ``Invalid URL``)."""
    shown = raw_path if len(raw_path) <= 200 else raw_path[:200] + "…"
    return NotFoundError(
        f"Invalid URL ({method} {shown}): a path below /v1/ takes plain segments only (no empty, '.' or '..' "
        "segments, no backslashes, no encoded '/', '\\', '.', '%', '?', '#' or control characters).",
        code="unknown_url")


class BaseURL:
    """A backend's ``base_url``, parsed once, that upstream URLs are built under."""

    __slots__ = ("text", "url", "_path", "_authority", "_scheme", "_joined")

    def __init__(self, base_url: str):
        self.text = base_url.rstrip("/")
        self.url = URL(self.text)
        self._path = self.url.raw_path.rstrip("/") + "/"
        self._authority = self.url.raw_authority
        self._scheme = self.url.scheme
        self._joined: dict[tuple[str, str], URL] = {}  # checked URLs of the first paths seen (clients repeat a few)

    def join(self, path: str, query: str = "") -> URL:
        """``{base_url}/{path}?{query}`` as a ``URL``; raises ``NotFoundError`` (404,
        ``unknown_url``) when the result would leave ``base_url``: another host, a path outside
        its prefix, or an encoded separator a later hop could decode into one."""
        url = self._joined.get((path, query))
        if url is not None:
            return url
        url = URL(f"{self.text}/{path}?{query}" if query else f"{self.text}/{path}")
        raw = url.raw_path
        if (not raw.startswith(self._path) or url.raw_authority != self._authority or url.scheme != self._scheme
                or _BAD_OUTBOUND.search(raw, len(self._path)) is not None):
            raise NotFoundError(f"Invalid URL: the path {path!r} does not stay inside the backend's base_url.",
                                code="unknown_url")
        if len(self._joined) < 256:
            self._joined[(path, query)] = url
        return url


__all__ = ["BaseURL", "clean_endpoint", "unknown_url"]
