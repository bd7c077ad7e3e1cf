"""Row values and their wire format, shared by every ClickHouse table the gateway writes: UTC
timestamps as ``DateTime64(3)`` text, request ids as UUIDs, ``JSONCompactEachRow`` encoding, and
loading the ``module:function`` hooks a config names."""

from __future__ import annotations

import importlib
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from gateway.telemetry.facts_repair import clean_text

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_REQUEST_ID_NS = uuid.UUID("6f1c1a4e-2b1d-4f6c-9a55-0c3e1b8d9f00")
_CANONICAL_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SECOND_TEXT: dict[int, str] = {}


def format_ts(epoch: float) -> str:
    """Unix seconds → ``'YYYY-MM-DD hh:mm:ss.fff'`` in UTC (``DateTime64(3, 'UTC')`` text)."""
    ms = int(round(epoch * 1000))
    secs, millis = divmod(ms, 1000)
    text = _SECOND_TEXT.get(secs)
    if text is None:  # rows of a batch share their seconds: format each second once
        if len(_SECOND_TEXT) > 4096:
            _SECOND_TEXT.clear()
        text = _SECOND_TEXT[secs] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(secs))
    return f"{text}.{millis:03d}"


def to_uuid(request_id: str) -> tuple[str, str]:
    """``(uuid, client_request_id)`` of a context's ``request_id``: the gateway's own ids are
    UUIDs, used as is; any other string (a context built by hand) maps to a stable UUIDv5 and is
    kept verbatim in ``client_request_id``."""
    if len(request_id) == 36 and _CANONICAL_UUID_RE.match(request_id):
        return request_id, ""  # the gateway's own ids: already canonical
    if len(request_id) in (32, 36) and UUID_RE.match(request_id):
        return str(uuid.UUID(request_id)), ""
    return str(uuid.uuid5(_REQUEST_ID_NS, request_id)), request_id


def load_hook(spec: str) -> Callable[[str, str], str]:
    """Import ``"module:function"``; raises ``ValueError`` when it cannot be found."""
    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load redaction hook {spec!r}: {exc}") from None
    if not callable(fn):
        raise ValueError(f"redaction hook {spec!r} is not callable")
    return fn


def _sanitize(value: Any) -> Any:
    """Replace lone surrogates (unencodable in UTF-8) by U+FFFD so the row still serialises (the
    facts encoder already did; this is the last guard for rows built some other way)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {_sanitize(k): _sanitize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_sanitize(v) for v in value]
    if isinstance(value, float) and value != value:
        return None
    return value


def encode_rows(rows: list[list[Any]]) -> bytes:
    """``JSONCompactEachRow`` bytes (one JSON array per line) for ``rows``."""
    out = []
    dumps = orjson.dumps
    for row in rows:
        try:
            out.append(dumps(row))
        except (TypeError, orjson.JSONEncodeError):
            out.append(dumps(_sanitize(row)))
    out.append(b"")
    return b"\n".join(out)
