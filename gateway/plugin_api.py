"""The public API for policy plugins: everything a plugin may import from the gateway.

A plugin imports from this module only (``from gateway.plugin_api import Verdict``); the rest of
the gateway is internal and may change between releases. Its hooks receive a ``PluginRequest``,
a narrow view of the request — not the gateway's own request state — so a plugin can read who is
asking for what, and change the request body only through a ``modify`` verdict, which the
gateway then checks (the model against the key again) and re-encodes.

- ``Verdict``: what ``before_request`` decides (allow / modify / reject).
- ``PluginRequest``: the request as a plugin sees it.
- ``PluginResponse``: the response ``after_response`` receives (headers and body may still be
  changed while ``not response.prepared``).
- ``GatewayError``: raise it (or a subclass) from a hook to answer the client with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from aiohttp.web import StreamResponse as PluginResponse

from gateway.core.errors import GatewayError

if TYPE_CHECKING:
    from gateway.core.context import RequestContext

__all__ = ["GatewayError", "PluginRequest", "PluginResponse", "Verdict"]

_NO_METADATA: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``before_request`` decided: ``Verdict.allow()``, ``Verdict.modify(body=None)``
    (``None``: ``request.body`` was changed in place) or ``Verdict.reject(message, status=400,
    code=None)``."""

    action: str
    body: dict[str, Any] | None = None
    status: int = 400
    message: str = ""
    code: str | None = None

    @classmethod
    def allow(cls) -> Verdict:
        return _ALLOW

    @classmethod
    def modify(cls, body: dict[str, Any] | None = None) -> Verdict:
        return cls("modify", body=body)

    @classmethod
    def reject(cls, message: str, status: int = 400, code: str | None = None) -> Verdict:
        if not 400 <= status <= 499:
            raise ValueError("a reject verdict needs a 4xx status")
        return cls("reject", status=status, message=message, code=code)


_ALLOW = Verdict("allow")


class PluginRequest:
    """One request as a plugin sees it.

    ``body`` is the request's JSON object: change it in place and return ``Verdict.modify()``,
    or return ``Verdict.modify(new_body)``; a change without a ``modify`` verdict is not
    guaranteed to reach the upstream. Everything else is read-only.
    """

    __slots__ = ("_ctx", "body")

    def __init__(self, ctx: RequestContext):
        self._ctx = ctx
        self.body: dict[str, Any] | None = ctx.body

    @property
    def request_id(self) -> str:
        """The gateway's id of this request (the telemetry row's ``request_id``)."""
        return self._ctx.request_id

    @property
    def endpoint(self) -> str:
        """The OpenAI endpoint, e.g. ``"chat/completions"``, ``"embeddings"``."""
        return self._ctx.endpoint

    @property
    def model_requested(self) -> str:
        """The model the client asked for (after any earlier ``modify``)."""
        return self._ctx.model_requested

    @property
    def tenant(self) -> str:
        """The caller's tenant (``""`` without keys)."""
        return self._ctx.tenant

    @property
    def api_key_id(self) -> str:
        """An id of the caller's key, never the key itself (``""`` without keys)."""
        return self._ctx.api_key_id

    @property
    def metadata(self) -> Mapping[str, str]:
        """Caller metadata (headers and body ``metadata``), read-only."""
        metadata = self._ctx.metadata
        return MappingProxyType(metadata) if metadata else _NO_METADATA

    @property
    def headers(self) -> Mapping[str, str]:
        """The client's request headers, read-only and case-insensitive."""
        headers: Mapping[str, str] = self._ctx.headers if self._ctx.headers is not None else _NO_METADATA
        return headers

