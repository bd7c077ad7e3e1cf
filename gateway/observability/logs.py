"""Structured logs: a JSON (or text) formatter, request ids on every line, the access line.

``configure_logging(level, fmt)`` installs one stderr handler on the root logger (the CLI
calls it). ``fmt="json"`` writes one JSON object a line: ``ts`` (UTC, ISO 8601), ``level``,
``logger``, ``msg``, and while a request is being served its ``request_id`` and ``trace_id``
(a ``ContextVar`` set when the request starts); an access line adds its fields. Messages and
tracebacks pass through ``scrub_secrets`` (``sk-…``, ``Bearer …``, URL passwords).

The access line (``observability.logging.access_log``, logger ``gateway.access``, level INFO)
is written when a request has ended, from its ``RequestContext``: ids, tenant, key id (a
fingerprint, never the key), model, backend, status, latency, tokens. Never bodies, headers,
or upstream error texts (which may quote the request).
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

import orjson

from gateway.core.context import RequestContext
from gateway.telemetry.scrub import scrub_secrets

ACCESS_LOGGER = "gateway.access"
CURRENT: ContextVar[RequestContext | None] = ContextVar("llm_gateway_request", default=None)
_QUIET = ("httpx", "httpx2", "openai")  # the demo's SDK client logs every request at INFO


class RequestIdFilter(logging.Filter):
    """Stamps ``request_id``/``trace_id`` of the request being served on each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = CURRENT.get()
        if ctx is not None and not hasattr(record, "request_id"):
            record.request_id = ctx.request_id
            if ctx.trace_id:
                record.trace_id = ctx.trace_id
        return True


def _iso(created: float) -> str:
    secs = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{int((created - secs) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``record.fields`` (a dict) is merged in."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _iso(record.created), "level": record.levelname, "logger": record.name,
                               "msg": scrub_secrets(record.getMessage())}
        for key in ("request_id", "trace_id"):
            value = getattr(record, key, None)
            if value:
                out[key] = value
        fields = getattr(record, "fields", None)
        if fields:
            out.update(fields)
        if record.exc_info:
            out["exc"] = scrub_secrets(self.formatException(record.exc_info))
        if record.stack_info:
            out["stack"] = scrub_secrets(self.formatStack(record.stack_info))
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic one-line text format; ``record.fields`` appended as ``key=value``."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = scrub_secrets(super().format(record))
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None and v != "")
        elif request_id := getattr(record, "request_id", None):
            line += f" request_id={request_id}"
        return line


def make_handler(fmt: str, stream=None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Replace the root logger's handlers with one stderr handler in ``fmt`` (json / text)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(fmt))
    root.setLevel(level.upper())
    for noisy in _QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Python warnings and a crash's traceback are lines on stderr too: through the handler.
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught if fmt == "json" else sys.__excepthook__


def _log_uncaught(kind, value, tb) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("gateway").critical("uncaught %s: %s", kind.__name__, value, exc_info=(kind, value, tb))


def access_fields(ctx: RequestContext) -> dict[str, Any]:
    """The access line's fields for a finished request (no bodies, headers or secrets)."""
    t_end = ctx.t_end if ctx.t_end is not None else ctx.t_start
    usage = ctx.usage
    fields: dict[str, Any] = {
        "request_id": ctx.request_id, "client_request_id": ctx.client_request_id or None,
        "trace_id": ctx.trace_id or None, "endpoint": ctx.endpoint,
        "model": ctx.model_requested, "model_served": ctx.model_served or None, "backend": ctx.backend or None,
        "provider": ctx.provider or None, "status": ctx.status_code, "error_type": ctx.error_type or None,
        "latency_ms": round((t_end - ctx.t_start) * 1000, 3),
        "ttft_ms": round((ctx.t_first_token - ctx.t_start) * 1000, 3) if ctx.t_first_token is not None else None,
        "stream": ctx.stream, "attempts": ctx.attempts, "cache_status": ctx.cache_status,
        "tenant": ctx.tenant or None, "api_key_id": ctx.api_key_id or None, "route_rule": ctx.route_rule or None,
        "prompt_id": ctx.prompt_id or None, "prompt_version": ctx.prompt_version,
        "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
        "client_ip": ctx.client_ip or None, "truncated": ctx.truncated or None,
    }
    return {k: v for k, v in fields.items() if v is not None}


class AccessLog:
    """Writes the access line of each finished request while ``enabled``."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.logger = logging.getLogger(ACCESS_LOGGER)

    def write(self, ctx: RequestContext) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        fields = access_fields(ctx)
        logger.info("/v1/%s %s %.1fms", ctx.endpoint, fields["status"], fields["latency_ms"],
                    extra={"fields": fields, "request_id": ctx.request_id, "trace_id": ctx.trace_id})
