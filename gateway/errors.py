"""The gateway's exception tree and its mapping to OpenAI-format error bodies.

::

    GatewayError                      status  type
    ├── InvalidRequestError            400    invalid_request_error
    │   ├── ModelNotFoundError         404    invalid_request_error  (code model_not_found)
    │   ├── NotFoundError              404    invalid_request_error  (code not_found)
    │   └── PayloadTooLargeError       413    invalid_request_error  (code payload_too_large)
    ├── NoHealthyTargetError           503    upstream_error         (code no_healthy_target)
    └── UpstreamError                  502    upstream_error
        ├── UpstreamUnreachableError   502    upstream_error         (code upstream_unreachable)
        ├── UpstreamTimeoutError       504    upstream_error         (code upstream_timeout)
        └── StreamTruncatedError       502    upstream_error         (code stream_truncated)

Every error renders as OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.
Messages never contain secrets: callers build them from request data and exception class
names, never from headers or backend settings.
"""

from __future__ import annotations

import orjson


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> bytes:
    """Serialise one OpenAI-format error object to JSON bytes."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


class GatewayError(Exception):
    """Base of every error the gateway answers with itself.

    ``status`` is the HTTP status; ``type``/``code``/``param`` fill OpenAI's error fields.
    ``headers`` are extra response headers (e.g. ``Retry-After``).
    """

    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> bytes:
        """The OpenAI-format JSON body for this error."""
        return error_body(self.message, self.type, self.param, self.code)


class InvalidRequestError(GatewayError):
    """The client's request is malformed or names something invalid (400)."""

    status = 400
    type = "invalid_request_error"


class ModelNotFoundError(InvalidRequestError):
    """The requested public model is not configured (404)."""

    status = 404
    code = "model_not_found"


class NotFoundError(InvalidRequestError):
    """No such endpoint (404)."""

    status = 404
    code = "not_found"


class PayloadTooLargeError(InvalidRequestError):
    """The request body exceeds ``server.body_limit_bytes`` (413)."""

    status = 413
    code = "payload_too_large"


class NoHealthyTargetError(GatewayError):
    """Every target of the model is skipped (circuit open, context window too small) (503).

    ``plan`` carries the routing decision, for provenance in the log row.
    """

    status = 503
    type = "upstream_error"
    code = "no_healthy_target"

    def __init__(self, message: str, *, plan=None):
        super().__init__(message)
        self.plan = plan


class UpstreamError(GatewayError):
    """The backend failed in a way that is not a response we can pass through (502)."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamUnreachableError(UpstreamError):
    """The backend could not be connected to (502)."""

    code = "upstream_unreachable"


class UpstreamTimeoutError(UpstreamError):
    """The backend did not answer within a configured timeout (504)."""

    status = 504
    code = "upstream_timeout"


class StreamTruncatedError(UpstreamError):
    """The backend's stream ended before ``data: [DONE]`` (reported in-band as an SSE event)."""

    code = "stream_truncated"
