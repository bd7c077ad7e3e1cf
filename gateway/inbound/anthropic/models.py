"""Anthropic's Models API: ``GET /v1/models`` and ``/v1/models/{id}`` as its SDKs read them
(``client.models.list()``, ``client.models.retrieve(id)``).

OpenAI's API and Anthropic's define the same two paths with different shapes; a request that
carries ``anthropic-version`` (every Anthropic SDK sends it) gets Anthropic's: ``ModelInfo``
objects (``type``, ``id``, ``display_name``, ``created_at`` in RFC 3339, ``lifecycle``) in a
page with ``has_more``, ``first_id`` and ``last_id``, cut by ``limit`` (default 20, at most
1000), ``after_id`` or ``before_id``. Every public model counts as ``active`` (the gateway
knows no release or retirement dates): a ``lifecycle`` filter without ``active`` lists none.
Pure: the caller passes the names the client may see, in the order the config lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.core.errors import InvalidRequestError

VERSION_HEADER = "anthropic-version"
DEFAULT_LIMIT, MAX_LIMIT = 20, 1000


def wants_anthropic(path: str, headers: Any) -> bool:
    """Whether a request to the model routes (``path``) asks for Anthropic's shape."""
    return path.startswith("/v1/models") and VERSION_HEADER in headers


def created_at(timestamp: float) -> str:
    """A time as the RFC 3339 string Anthropic's ``created_at`` holds."""
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def model_info(name: str, created: str) -> dict[str, Any]:
    """One public model as Anthropic's ``ModelInfo``."""
    return {"type": "model", "id": name, "display_name": name, "created_at": created, "lifecycle": "active"}


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequestError(f"limit: must be an integer from 1 to {MAX_LIMIT}", param="limit")
    return limit


def _position(names: Sequence[str], cursor: str, param: str) -> int:
    try:
        return names.index(cursor)
    except ValueError:
        raise InvalidRequestError(f"{param}: no model `{cursor[:100]}` in this list", param=param) from None


def model_page(names: Sequence[str], created: str, query: Any) -> dict[str, Any]:
    """The page of ``names`` that ``query`` (the request's query, a multidict) asks for."""
    limit = _limit(query.get("limit"))
    lifecycle = query.getall("lifecycle[]", []) + query.getall("lifecycle", [])  # the SDKs send `lifecycle[]`
    if lifecycle and "active" not in lifecycle:
        names = ()
    after, before = query.get("after_id"), query.get("before_id")
    if after is not None and before is not None:
        raise InvalidRequestError("Send after_id or before_id, not both.", param="before_id")
    if after is not None:
        start = _position(names, after, "after_id") + 1
        page, has_more = names[start:start + limit], start + limit < len(names)
    elif before is not None:
        end = _position(names, before, "before_id")
        start = max(0, end - limit)
        page, has_more = names[start:end], start > 0
    else:
        page, has_more = names[:limit], limit < len(names)
    return {"data": [model_info(name, created) for name in page], "has_more": has_more,
            "first_id": page[0] if page else None, "last_id": page[-1] if page else None}


__all__ = ["VERSION_HEADER", "created_at", "model_info", "model_page", "wants_anthropic"]
