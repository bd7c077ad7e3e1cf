"""Which paths below ``/v1/`` the proxy forwards, and upstream URLs that stay inside a backend.

A pass-through request is sent to ``{base_url}/{endpoint}`` with the backend's own key, so a
path that climbs out of ``base_url`` (``/v1/../../admin``, ``%2e%2e``, ``..%2f``) would reach
whatever else the backend serves. Two checks close that, one at each edge:

- ``clean_endpoint(raw_path)`` looks at the request target exactly as the client wrote it
  (before any decoding) and admits only plain segments: no empty, ``.`` or ``..`` segment (also
  with ``;`` parameters, ``..;``, which Java servers read as ``..``), no backslash, no character
  outside a URL path, and no percent-encoded ``/``, ``\\``, ``.``, ``%``, ``?``, ``#`` or control
  character (each of these either changes the path once a later hop decodes it, or changes what
  the forwarded URL means). Escapes must decode to valid UTF-8 that Unicode compatibility
  folding (NFKC, as some servers apply) does not turn into a separator or a dot segment
  (overlong ``%c0%ae``, fullwidth ``%ef%bc%8f``, one-dot leader ``%e2%80%a4``).
- ``BaseURL(base_url).join(path, query)`` builds the upstream URL and refuses any result that
  is not below ``base_url``'s own path on its own host, whatever the adapter or caller passed in.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from urllib.parse import unquote_to_bytes

from yarl import URL

from gateway.core.errors import NotFoundError

_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})"
_ENDPOINT = re.compile(rf"{_PCHAR}+(?:/{_PCHAR}+)*")
# Encoded "/", "%", ".", "#", "?", "\" and control characters (C0 and DEL).
_BAD_ESCAPE = re.compile(r"%(?:2[35EeFf]|3[Ff]|5[Cc]|[01][0-9A-Fa-f]|7[Ff])")
# In a built upstream URL (after yarl has normalised it): encoded "/", "\" or "%", a backslash, or
# a dot segment with parameters ("/..;/", "/.%3B").
_BAD_OUTBOUND = re.compile(r"%(?:2[5Ff]|5[Cc])|\\|/\.\.?(?:;|%3[Bb])")
# "." or "..", alone or with ";" parameters (Tomcat, Jetty and Spring drop those, then resolve "..").
_DOT_SEGMENT = re.compile(r"(?:^|/)\.\.?(?:[/;]|%3[Bb]|$)")


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
    if "%" in tail and (_BAD_ESCAPE.search(tail) is not None or not _escapes_stay_plain(tail)):
        return False
    return "." not in tail or _DOT_SEGMENT.search(tail) is None


def _escapes_stay_plain(tail: str) -> bool:
    """Whether the escapes of ``tail`` decode to valid UTF-8 that NFKC folding does not turn into
    a separator or a dot segment."""
    try:
        decoded = unquote_to_bytes(tail).decode("utf-8")
    except UnicodeDecodeError:  # overlong forms (%c0%ae is ".") and other invalid sequences
        return False
    folded = unicodedata.normalize("NFKC", decoded)
    if folded == decoded:
        return True
    return ("\\" not in folded and folded.count("/") == decoded.count("/")
            and _DOT_SEGMENT.search(folded) is None)


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
                or _BAD_OUTBOUND.search(raw, len(self._path) - 1) is not None):
            raise NotFoundError(f"Invalid URL: the path {path!r} does not stay inside the backend's base_url.",
                                code="unknown_url")
        if len(self._joined) < 256:
            self._joined[(path, query)] = url
        return url


__all__ = ["BaseURL", "clean_endpoint", "unknown_url"]
