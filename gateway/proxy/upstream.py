"""The only module that talks HTTP to backends.

One shared ``aiohttp.ClientSession`` (keep-alive pool, no per-request setup) serves every
backend. ``BackendClient`` precomputes, once per config snapshot, each backend's provider (found
by its type in ``gateway.providers``), URL prefix, outgoing headers (its own key, never the
client's) and timeouts, so a request only joins a path and sends. A provider that answers
in-process (``mock``) is asked for the answer instead of sending anything. Transport failures
become ``UpstreamUnreachableError`` (502) or ``UpstreamTimeoutError`` (504); HTTP error
statuses are returned as responses for the caller to pass through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping

import aiohttp
from multidict import CIMultiDict

from gateway.config.models import Backend
from gateway.core.deadlines import deadline
from gateway.core.errors import GatewayError, UpstreamTimeoutError, UpstreamUnreachableError
from gateway.core.upstream import UpstreamResponse, translated
from gateway.providers import InProcessProvider, adapter_for
from gateway.proxy.paths import BaseURL

# Response headers worth passing back to the client; the rest (Content-Length,
# Content-Encoding, hop-by-hop) describe the upstream hop, not our response.
_PASS_BACK_PREFIXES = ("x-ratelimit-", "openai-", "anthropic-ratelimit-")
_PASS_BACK_EXACT = frozenset({"retry-after", "retry-after-ms", "content-type"})


# Verdicts by header name as received: upstreams send the same few dozen names on every
# response, so each is lower-cased and matched once. Bounded, as names come from the network.
_PASSED: dict[str, bool] = {}


def _passes(name: str) -> bool:
    low = name.lower()
    verdict = low in _PASS_BACK_EXACT or low.startswith(_PASS_BACK_PREFIXES)
    if len(_PASSED) < 512:
        _PASSED[name] = verdict
    return verdict


def pass_back_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Select the upstream response headers the client should see (rate limits, retry hints)."""
    passed = _PASSED
    out = {}
    for name, value in headers.items():
        verdict = passed.get(name)
        if verdict is None:
            verdict = _passes(name)
        if verdict:
            out[name] = value
    return out


def create_session() -> aiohttp.ClientSession:
    """The process-wide upstream session: pooled keep-alive connections, no cookie jar.

    Bodies are decoded (``auto_decompress``) so what the client receives always matches the
    headers we send with it. No ``skip_auto_headers``: every request carries the gateway's own
    ``User-Agent`` (``BackendClient``), so aiohttp never adds its version-naming one, and a
    skip list would cost a copy of the headers on every request.
    """
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=60)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=True)


class HTTPUpstreamResponse:
    """An upstream HTTP response: ``status``, ``headers``, ``read()``, ``iter_chunks()``, ``close()``.

    ``close()`` drops the connection (the upstream sees the disconnect at once); ``release()``
    returns a fully read connection to the pool.
    """

    __slots__ = ("_resp", "status", "headers")

    def __init__(self, resp: aiohttp.ClientResponse):
        self._resp = resp
        self.status = resp.status
        self.headers: Mapping[str, str] = resp.headers

    async def read(self) -> bytes:
        return await self._resp.read()

    def iter_chunks(self) -> AsyncIterator[bytes]:
        return self._resp.content.iter_any()

    def close(self) -> None:
        self._resp.close()

    def release(self) -> None:
        self._resp.release()


class TranslatedResponse(HTTPUpstreamResponse):
    """An upstream response seen through a translating adapter: status, body, stream and
    errors come out in OpenAI's shapes (``Content-Type`` set to match)."""

    __slots__ = ("_adapter", "_endpoint", "_request_body")

    def __init__(self, resp: aiohttp.ClientResponse, adapter, endpoint: str, request_body: dict):
        super().__init__(resp)
        self._adapter = adapter
        self._endpoint = endpoint
        self._request_body = request_body
        if resp.status >= 400:
            self.status, _ = adapter.map_error(resp.status, b"")
        headers = dict(pass_back_headers(resp.headers))
        is_sse = resp.headers.get("Content-Type", "").startswith("text/event-stream")
        headers["Content-Type"] = "text/event-stream" if is_sse and resp.status < 400 else "application/json"
        self.headers = headers

    async def read(self) -> bytes:
        body = await self._resp.read()
        if self._resp.status >= 400:
            self.status, out = self._adapter.map_error(self._resp.status, body)
            return out
        return self._adapter.parse_response(self._endpoint, body)

    def iter_chunks(self):
        return translated(self._resp.content.iter_any(), self._adapter.stream_decoder(self._endpoint,
                                                                                      self._request_body))


class BackendClient:
    """Sends requests to one configured backend (the ``gateway.core.upstream.Upstream`` that
    routing hands the attempt loop).

    ``name``: the backend's config key. ``backend``: its settings. ``session``: the shared
    ``ClientSession`` (unused by an in-process provider). ``forward`` below is the one entry point.
    Raises ``ValueError`` for a backend type no provider is registered for.
    """

    __slots__ = ("name", "backend", "type", "_session", "_base", "_headers", "_timeout", "first_byte_s",
                 "adapter", "needs_raw", "native_paths", "_native_prefixes", "_translates",
                 "_answer")

    def __init__(self, name: str, backend: Backend, session: aiohttp.ClientSession | None):
        self.name = name
        self.backend = backend
        self.type = backend.type
        self._session = session
        self._base = BaseURL(backend.base_url) if backend.base_url else None
        provider = adapter_for(backend.type)
        if provider is None:
            raise ValueError(f"backend {name!r}: no provider is registered for type {backend.type!r}")
        headers = {"Content-Type": "application/json", "User-Agent": "llm-gateway"}
        headers.update(backend.headers)
        self._answer: Callable[[str, dict, str, Backend], UpstreamResponse] | None = None
        if isinstance(provider, InProcessProvider):  # answers by itself: nothing goes over HTTP
            self.adapter = None
            self._answer = provider.answer
            self._translates = False
        else:
            self.adapter = provider
            self._translates = getattr(provider, "translates_responses", False)
            headers.update(provider.static_headers(backend))
        # Paths of the backend's own API that an inbound protocol sends as they are (Anthropic's
        # ``messages``): no translation either way (``gateway.inbound``).
        native: frozenset[str] = getattr(provider, "native_paths", frozenset())
        if backend.responses is not None:  # the config says whether this backend serves /v1/responses
            native = native | {"responses"} if backend.responses == "native" else native - {"responses"}
        self.native_paths = native
        self._native_prefixes: tuple[str, ...] = getattr(provider, "native_prefixes", ())
        # Whether ``forward`` needs the encoded body: identity and address-only adapters send
        # bytes; in-process providers and translating adapters work from the parsed dict.
        self.needs_raw = self.adapter is not None and not self._translates
        self._headers = headers
        t = backend.timeouts
        self._timeout = aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.read)
        self.first_byte_s = t.first_byte

    async def forward(self, method: str, path: str, body: bytes | None, parsed: dict | None,
                      upstream_model: str, extra_headers: Mapping[str, str] | None = None,
                      query: str = "") -> UpstreamResponse:
        """Send one request and return its response once the headers are in.

        ``path``: the part after ``/v1/`` (``chat/completions``). ``body``: the bytes to send.
        ``parsed``: the same body as a dict (what translating and in-process providers read).
        Returns an object with ``status``, ``headers``, ``read()``, ``iter_chunks()``,
        ``close()``. Raises ``UpstreamUnreachableError`` or ``UpstreamTimeoutError``, and
        ``InvalidRequestError`` (400) when the backend cannot serve the request, and
        ``NotFoundError`` (404) for a path that would leave the backend's ``base_url``.
        """
        answer = self._answer
        if answer is not None:
            return answer(path, parsed or {}, upstream_model, self.backend)
        path_in = path
        adapter = self.adapter
        assert adapter is not None  # a provider either answers in-process or has an adapter
        headers: Mapping[str, str] = self._headers
        translated = self._translates
        if translated and (path in self.native_paths or path.startswith(self._native_prefixes)):
            # the backend's own API, asked by an inbound protocol or sent by ``passthrough:``
            translated = False
        elif not adapter.identity:  # the provider decides address, body and extra headers
            req = adapter.build_request(path, parsed or {}, body if self.needs_raw else None, upstream_model,
                                        self.backend)
            path, query, body = req.path, req.query, req.body
            if req.headers:
                extra_headers = {**(extra_headers or {}), **req.headers}
        if extra_headers:
            merged = CIMultiDict(headers)
            for k, v in extra_headers.items():
                merged[k] = v
            headers = merged
        base, session = self._base, self._session
        assert base is not None and session is not None  # a backend reached over HTTP has both
        # Never outside base_url, whatever the path (raises NotFoundError before anything is sent).
        url = base.join(path, query)
        try:
            with deadline(self.first_byte_s):
                resp = await session.request(method, url, data=body, headers=headers,
                                                   timeout=self._timeout, allow_redirects=False)
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"backend {self.name!r} did not answer within {self.first_byte_s:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamUnreachableError(
                f"backend {self.name!r} is unreachable ({type(exc).__name__}: {exc.os_error.strerror or exc.os_error})"
            ) from None
        except aiohttp.ClientError as exc:
            if isinstance(exc.__cause__, GatewayError):  # the client's upload failed as it streamed on
                raise exc.__cause__ from None  # (past the limit, a second model): its error, not ours
            raise UpstreamUnreachableError(f"backend {self.name!r} failed: {type(exc).__name__}") from None
        if translated:
            return TranslatedResponse(resp, adapter, path_in, parsed or {})
        return HTTPUpstreamResponse(resp)
