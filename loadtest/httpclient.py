"""HTTP engines for the load generator: a lean raw HTTP/1.1 client and an aiohttp one.

Both give ``await engine.connect()`` → a connection with ``await conn.request(stream, body)``
→ ``Result``. The raw engine (default) is an ``asyncio.Protocol`` with its own small parser:
keep-alive, ``Content-Length`` and chunked bodies, SSE events counted as they arrive. It costs
a fraction of aiohttp's client per request, which matters because the load generator shares a
core with the fake upstream and must not be the bottleneck. The aiohttp engine is there to
cross-check the raw one (``--engine aiohttp``).

Stream metrics: ``t_first`` is when the first body byte arrived (for SSE: the first event),
``gaps`` the times between reads that brought at least one complete event, and ``done`` whether
the last event was ``data: [DONE]``. An in-band ``data: {"error": …}`` event marks
``sse_error``.
"""

from __future__ import annotations

import asyncio
from time import perf_counter
from typing import NamedTuple
from urllib.parse import urlsplit

import aiohttp

_HEAD, _CL, _CHUNKED, _EOF = 0, 1, 2, 3
_DONE = b"data: [DONE]"
_ERROR_EVENT = b'data: {"error"'


class Result(NamedTuple):
    status: int
    t_first: float          # perf_counter() at the first body byte / first SSE event
    t_end: float            # perf_counter() when the response was complete
    events: int             # SSE events received (0 for JSON)
    done: bool              # SSE: last event was data: [DONE]
    sse_error: bool         # SSE: an in-band {"error": ...} event arrived
    gaps: list[float] | None  # SSE: seconds between reads that carried events
    nbytes: int             # body bytes


class Target(NamedTuple):
    """Where requests go: ``base`` like ``http://127.0.0.1:8080/v1`` plus the endpoint."""

    host: str
    port: int
    path: str
    url: str
    api_key: str

    @classmethod
    def parse(cls, base_url: str, endpoint: str, api_key: str = "sk-loadtest") -> Target:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"target {base_url!r}: only http://HOST:PORT[/prefix] URLs are supported")
        path = parts.path.rstrip("/") + "/" + endpoint
        return cls(parts.hostname, parts.port or 80, path, f"http://{parts.netloc}{path}", api_key)


class _SSE:
    """Counts SSE events across reads (each ``\\n\\n`` once) and keeps the stream's tail."""

    __slots__ = ("events", "tail", "error", "gaps", "t_last", "_pending_nl")

    def __init__(self) -> None:
        self.events = 0
        self.tail = b""
        self.error = False
        self.gaps: list[float] = []
        self.t_last = 0.0
        self._pending_nl = False  # the previous payload ended with a lone "\n"

    def feed(self, payload: bytes, now: float) -> None:
        if not payload:
            return
        n = payload.count(b"\n\n")
        if self._pending_nl and payload[:1] == b"\n":
            n += 1
        self._pending_nl = payload[-1:] == b"\n" and payload[-2:] != b"\n\n"
        if _ERROR_EVENT in payload:
            self.error = True
        tail = self.tail + payload
        self.tail = tail[-64:]
        if n:
            if self.events:
                self.gaps.append(now - self.t_last)
            self.t_last = now
            self.events += n

    @property
    def done(self) -> bool:
        return self.tail.rstrip().endswith(_DONE)


class RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    __slots__ = ("transport", "alive", "_head_tpl", "_fut", "_state", "_buf", "_status", "_sse", "_left",
                 "_skip", "_final", "_t_first", "_nbytes", "_keep_alive")

    def __init__(self, head_tpl: bytes):
        self.transport: asyncio.Transport | None = None
        self.alive = False
        self._head_tpl = head_tpl
        self._fut: asyncio.Future | None = None
        self._state = _HEAD
        self._buf = b""

    # --- protocol callbacks ------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.alive = True

    def connection_lost(self, exc) -> None:
        self.alive = False
        fut = self._fut
        if fut is not None and not fut.done():
            if self._state == _EOF:
                self._finish(perf_counter())
            else:
                fut.set_exception(ConnectionResetError("connection closed mid-response"))

    def eof_received(self):
        return False

    def data_received(self, data: bytes) -> None:
        now = perf_counter()
        if self._fut is None:
            return  # unsolicited bytes: ignore
        if self._state == _HEAD:
            buf = self._buf + data if self._buf else data
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                self._buf = buf
                return
            self._buf = b""
            head = buf[:i].lower()
            data = buf[i + 4:]
            try:
                self._status = int(head[9:12])
            except ValueError:
                self._fail(ValueError(f"bad status line {head[:40]!r}"))
                return
            self._keep_alive = b"connection: close" not in head
            self._sse = _SSE() if b"text/event-stream" in head else None
            self._nbytes = 0
            self._t_first = 0.0
            if b"transfer-encoding: chunked" in head:
                self._state = _CHUNKED
                self._left = 0
                self._skip = 0
                self._final = False
            else:
                j = head.find(b"content-length:")
                if j >= 0:
                    end = head.find(b"\r\n", j)
                    self._left = int(head[j + 15:end if end >= 0 else None])
                    self._state = _CL
                    if self._left == 0:
                        self._finish(now)
                        return
                elif self._status in (204, 304):
                    self._finish(now)
                    return
                else:
                    self._state = _EOF
            if not data:
                return
        if self._state == _CHUNKED:
            self._chunked(data, now)
        elif self._state == _CL:
            self._body(data[:self._left], now)
            self._left -= len(data)
            if self._left <= 0:
                self._finish(now)
        else:  # _EOF: body until the server closes
            self._body(data, now)

    # --- parsing ------------------------------------------------------------------------
    def _body(self, payload: bytes, now: float) -> None:
        if not payload:
            return
        if not self._t_first:
            self._t_first = now
        self._nbytes += len(payload)
        if self._sse is not None:
            self._sse.feed(payload, now)

    def _chunked(self, data: bytes, now: float) -> None:
        buf = self._buf + data if self._buf else data
        pos, n = 0, len(buf)
        parts = []
        while pos < n:
            if self._left:
                take = min(self._left, n - pos)
                parts.append(buf[pos:pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._skip = 2
                continue
            if self._skip:
                take = min(self._skip, n - pos)
                pos += take
                self._skip -= take
                if not self._skip and self._final:
                    break
                continue
            j = buf.find(b"\r\n", pos)
            if j < 0:
                break
            size = int(buf[pos:j].split(b";", 1)[0], 16)
            pos = j + 2
            if size:
                self._left = size
            else:
                self._final = True
                self._skip = 2  # the CRLF after the (empty) trailer section
        self._buf = buf[pos:] if pos < n else b""
        if parts:
            self._body(parts[0] if len(parts) == 1 else b"".join(parts), now)
        if self._final and not self._skip:
            self._buf = b""
            self._finish(now)

    def _finish(self, now: float) -> None:
        fut, self._fut = self._fut, None
        self._state = _HEAD
        sse = self._sse
        if sse is None:
            result = Result(self._status, self._t_first or now, now, 0, False, False, None, self._nbytes)
        else:
            result = Result(self._status, self._t_first or now, now, sse.events, sse.done, sse.error,
                            sse.gaps, self._nbytes)
        if not self._keep_alive:
            self.alive = False
            self.transport.close()
        if fut is not None and not fut.done():
            fut.set_result(result)

    def _fail(self, exc: BaseException) -> None:
        self.alive = False
        fut, self._fut = self._fut, None
        if self.transport is not None:
            self.transport.abort()
        if fut is not None and not fut.done():
            fut.set_exception(exc)

    # --- API ----------------------------------------------------------------------------
    def request(self, stream: bool, body: bytes) -> asyncio.Future:
        """Send one POST; the future resolves to a ``Result`` (or raises on a broken connection)."""
        if not self.alive:
            raise ConnectionResetError("connection is closed")
        fut = asyncio.get_running_loop().create_future()
        self._fut = fut
        self._state = _HEAD
        self._buf = b""
        self.transport.write(self._head_tpl % len(body) + body)
        return fut

    def close(self) -> None:
        self.alive = False
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._fail(TimeoutError("aborted"))


class RawEngine:
    """Opens ``RawConnection``s to a target."""

    name = "raw"

    def __init__(self, target: Target):
        self.target = target
        self._head_tpl = (
            f"POST {target.path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {target.api_key}\r\n"
            "Content-Length: %d\r\n\r\n").encode()

    async def connect(self) -> RawConnection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: RawConnection(self._head_tpl),
                                               self.target.host, self.target.port)
        return conn

    async def close(self) -> None:
        pass


class AiohttpConnection:
    """A handle on the engine's shared ``ClientSession`` with the raw connection's interface."""

    __slots__ = ("_engine", "alive")

    def __init__(self, engine: AiohttpEngine):
        self._engine = engine
        self.alive = True

    async def request(self, stream: bool, body: bytes) -> Result:
        e = self._engine
        async with e.session.post(e.target.url, data=body, headers=e.headers) as resp:
            sse = _SSE() if resp.headers.get("Content-Type", "").startswith("text/event-stream") else None
            t_first = 0.0
            nbytes = 0
            async for data in resp.content.iter_any():
                now = perf_counter()
                if not t_first:
                    t_first = now
                nbytes += len(data)
                if sse is not None:
                    sse.feed(data, now)
            now = perf_counter()
            if sse is None:
                return Result(resp.status, t_first or now, now, 0, False, False, None, nbytes)
            return Result(resp.status, t_first or now, now, sse.events, sse.done, sse.error, sse.gaps, nbytes)

    def close(self) -> None:
        self.alive = False

    def abort(self) -> None:
        self.alive = False


class AiohttpEngine:
    """aiohttp's client, one pooled session (for cross-checking the raw engine)."""

    name = "aiohttp"

    def __init__(self, target: Target, max_connections: int = 0):
        self.target = target
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {target.api_key}"}
        self._limit = max_connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, limit_per_host=0),
                timeout=aiohttp.ClientTimeout(total=None), auto_decompress=False)
        return self._session

    async def connect(self) -> AiohttpConnection:
        _ = self.session
        return AiohttpConnection(self)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def make_engine(kind: str, target: Target, max_connections: int = 0):
    if kind == "raw":
        return RawEngine(target)
    if kind == "aiohttp":
        return AiohttpEngine(target, max_connections)
    raise ValueError(f"unknown engine {kind!r} (raw or aiohttp)")
