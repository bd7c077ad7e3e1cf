"""What a request to ClickHouse's HTTP interface says, and how an answer or error is written.

Pure functions and small types, no engine: ``read_statement`` turns a request's URL parameters,
headers and (decoded) body into a ``Statement``; ``StoreError`` carries a ClickHouse error
(``Code: N. DB::Exception: … (NAME)``) and the HTTP status ClickHouse would answer it with.
The parts covered are the ones clickhouse-connect's HTTP client and ``curl`` users need:

- the query in the ``query`` URL parameter and/or the body (ClickHouse joins them with a
  newline; for ``INSERT … FORMAT X`` the rest of the body is the data);
- a ``multipart/form-data`` body's ``query`` and ``param_<name>`` fields, which clickhouse-connect
  sends once the parameters outgrow a URL (read by ``gateway.store.http_interface``);
- ``database`` (or ``X-ClickHouse-Database``), ``default_format`` (or ``X-ClickHouse-Format``),
  ``param_<name>`` server-side parameters, and every other URL parameter as a setting;
- credentials by basic auth, ``user``/``password`` parameters or ``X-ClickHouse-User``/``-Key``;
- ``readonly``: ``1`` (no writes, no table functions) and ``2`` (no writes) as sent; a GET
  request is at least ``readonly=2``, as ClickHouse does; ``INTO OUTFILE`` is refused, as a
  server refuses it over HTTP (chDB would write the file);
- request bodies with ``Content-Encoding`` lz4 / zstd / gzip / deflate, and compressed answers
  when ``enable_http_compression=1``.
"""

from __future__ import annotations

import base64
import gzip
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

# URL parameters that steer the HTTP exchange and are not settings of the query.
TRANSPORT_PARAMS = frozenset({
    "query", "database", "default_format", "user", "password", "query_id", "session_id", "session_timeout",
    "session_check", "compress", "decompress", "buffer_size", "wait_end_of_query", "enable_http_compression",
    "http_headers_progress_interval_ms", "send_progress_in_http_headers", "client_protocol_version", "role",
    "quota_key", "cancel_http_readonly_queries_on_client_close", "http_zlib_compression_level",
})
INSERT_RE = re.compile(
    rb"^\s*INSERT\s+INTO\s+(?P<target>.+?)\s+(?P<settings>SETTINGS\s+.+?\s+)?FORMAT\s+(?P<fmt>\w+)[ \t]*(\r?\n)?",
    re.IGNORECASE | re.DOTALL)
_FORMAT_RE = re.compile(rb"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE)
_CODE_RE = re.compile(r"Code: (\d+)")
# comments and quoted literals, blanked before looking for INTO OUTFILE
_NOISE_RE = re.compile(rb"--[^\n]*|#![^\n]*|/\*.*?\*/|'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"|`(?:\\.|[^`\\])*`",
                       re.DOTALL)
_OUTFILE_RE = re.compile(rb"\bINTO\s+OUTFILE\b", re.IGNORECASE)
# How clickhouse-connect learns which settings it may send (see ``read_statement``).
_SETTINGS_PROBE_RE = re.compile(
    rb"^\s*SELECT\s+name\s*,\s*value\s*,\s*readonly\s+FROM\s+system\.settings(\s+LIMIT\s+\d+)?"
    rb"(\s+FORMAT\s+\w+)?\s*;?\s*$", re.IGNORECASE)
_SETTING_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Enough of the statement to find an INSERT's head, without scanning a large data body.
_HEAD_BYTES = 65536
DEFAULT_FORMAT = "TabSeparated"

# ClickHouse's HTTP status for an exception code (HTTPHandler's exceptionCodeToHTTPStatus, in part).
_STATUS_OF_CODE = {
    62: 400,    # SYNTAX_ERROR
    27: 400,    # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    115: 404,   # UNKNOWN_SETTING
    46: 404, 47: 404, 60: 404, 81: 404,  # UNKNOWN_FUNCTION / _IDENTIFIER / _TABLE / _DATABASE
    164: 403,   # READONLY
    497: 403,   # ACCESS_DENIED
    516: 401,   # AUTHENTICATION_FAILED
}


class StoreError(Exception):
    """A ClickHouse error: ``str(exc)`` is its message (``Code: N. DB::Exception: …``)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        code = _CODE_RE.search(message)
        self.code = int(code.group(1)) if code else 1000
        self.status = status or _STATUS_OF_CODE.get(self.code, 500)

    @classmethod
    def from_engine(cls, exc: BaseException) -> StoreError:
        """The engine's exception as ClickHouse writes it (its text from ``Code:`` on)."""
        message = str(exc)
        at = message.find("Code: ")
        return cls(message[at:].strip() if at >= 0 else f"Code: 1000. DB::Exception: {message}")


def readonly_error() -> StoreError:
    return StoreError("Code: 164. DB::Exception: Cannot execute query in readonly mode. (READONLY)")


@dataclass
class Statement:
    """One request's statement. ``text``: the SQL (for an INSERT, the head and its data);
    ``settings``: every setting to apply, ``readonly`` included when it is not 0;
    ``params``: server-side parameters (``param_<name>``); ``format``: the answer's format."""

    text: bytes
    database: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    format: str = DEFAULT_FORMAT
    insert: re.Match[bytes] | None = None

    @property
    def readonly(self) -> int:
        return int(self.settings.get("readonly", "0") or 0)

    @property
    def head(self) -> bytes:
        """The first line of the statement (for logs: never an INSERT's data)."""
        return self.text[:4096].split(b"\n", 1)[0]


def strictest_readonly(*levels: int) -> int:
    """The strictest of ``readonly`` levels: 1 (no writes, no settings) > 2 (no writes) > 0."""
    if 1 in levels:
        return 1
    return 2 if 2 in levels else 0


def read_statement(params: Mapping[str, str], headers: Mapping[str, str], body: bytes, *,
                   method: str = "POST", readonly_floor: int = 0) -> Statement:
    """The statement of one request (``body`` already decoded). ``readonly_floor``: the least
    ``readonly`` level every request of this server runs with (0, 2 or 1). Raises ``StoreError``."""
    query = params.get("query", "").encode()
    text = query + b"\n" + body if query and body else query or body
    if not text.strip():
        raise StoreError("Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
    settings = {k: v for k, v in params.items() if k not in TRANSPORT_PARAMS and not k.startswith("param_")}
    for key in settings:
        if not _SETTING_RE.match(key):
            raise StoreError(f"Code: 115. DB::Exception: Unknown setting '{key}'. (UNKNOWN_SETTING)")
    try:
        asked = int(settings.get("readonly", "0") or 0)
    except ValueError:
        raise StoreError("Code: 72. DB::Exception: Cannot parse the value of setting readonly. "
                         "(CANNOT_PARSE_NUMBER)", 400) from None
    level = strictest_readonly(asked, readonly_floor, 2 if method.upper() in ("GET", "HEAD") else 0)
    if readonly_floor and not asked and _SETTINGS_PROBE_RE.match(text):
        # A read-only server still lets a client set every setting but ``readonly`` (they are
        # applied before it): tell clickhouse-connect so, or it refuses to send the limits the
        # gateway's readers run under. The probe reads one system table and nothing else.
        level = 0
    settings.pop("readonly", None)
    if level:
        settings["readonly"] = str(level)
    insert = INSERT_RE.match(text[:_HEAD_BYTES])
    if insert is not None and level:
        raise readonly_error()
    if _OUTFILE_RE.search(_NOISE_RE.sub(b" ", text if insert is None else text[:insert.end()])):
        raise StoreError("Code: 358. DB::Exception: INTO OUTFILE is not allowed. (INTO_OUTFILE_NOT_ALLOWED)", 400)
    fmt = ""
    if insert is None:
        m = _FORMAT_RE.search(text)
        fmt = m.group(1).decode() if m else (params.get("default_format") or headers.get("X-ClickHouse-Format") or "")
    return Statement(text=text, database=params.get("database") or headers.get("X-ClickHouse-Database") or "",
                     settings=settings, params={k[6:]: v for k, v in params.items() if k.startswith("param_")},
                     format=fmt or DEFAULT_FORMAT, insert=insert)


def credentials(params: Mapping[str, str], headers: Mapping[str, str]) -> tuple[str, str]:
    """``(user, password)`` of a request: basic auth, ``X-ClickHouse-User``/``-Key``, or the
    ``user``/``password`` parameters (``default`` and no password when none is given)."""
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            raise StoreError("Code: 516. DB::Exception: Malformed basic authorization. (AUTHENTICATION_FAILED)") \
                from None
        return user, password
    if "X-ClickHouse-User" in headers:
        return headers["X-ClickHouse-User"], headers.get("X-ClickHouse-Key", "")
    return params.get("user", "default"), params.get("password", "")


def decode_body(data: bytes, encoding: str) -> bytes:
    """A request body as sent with ``Content-Encoding: encoding``, decompressed."""
    encoding = encoding.lower().strip()
    try:
        if not encoding or encoding == "identity":
            return data
        if encoding == "lz4":
            import lz4.frame
            return lz4.frame.decompress(data)
        if encoding == "zstd":
            from clickhouse_connect.driver.compression import _zstd_decompress
            return _zstd_decompress(data)
        if encoding == "gzip":
            return gzip.decompress(data)
        if encoding == "deflate":
            return zlib.decompress(data)
    except Exception as exc:
        raise StoreError(f"Code: 432. DB::Exception: Cannot decompress the {encoding} body: "
                         f"{type(exc).__name__}. (UNKNOWN_CODEC)", 400) from None
    raise StoreError(f"Code: 432. DB::Exception: Unknown Content-Encoding {encoding!r}. (UNKNOWN_CODEC)", 400)


def encode_body(data: bytes, accept: str) -> tuple[bytes, str | None]:
    """``(body, Content-Encoding)`` for a client that accepts ``accept`` (lz4, else gzip)."""
    accepted = [a.split(";")[0].strip() for a in accept.lower().split(",")]
    if "lz4" in accepted:
        import lz4.frame
        return lz4.frame.compress(data), "lz4"
    if "gzip" in accepted:
        return gzip.compress(data, compresslevel=3), "gzip"
    return data, None


def quote(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
