"""The gateway's exception tree and its mapping to OpenAI-format error bodies.

::

    GatewayError                      status  type
    ├── InvalidRequestError            400    invalid_request_error
    │   ├── ModelNotFoundError         404    invalid_request_error  (code model_not_found)
    │   ├── NotFoundError              404    invalid_request_error  (code not_found, unknown_url)
    │   ├── PayloadTooLargeError       413    invalid_request_error  (code payload_too_large)
    │   └── UnsupportedEncodingError   415    invalid_request_error  (code unsupported_media_type)
    ├── AuthenticationError            401    invalid_request_error  (code invalid_api_key)
    ├── PermissionDeniedError          403    invalid_request_error  (code model_not_allowed, endpoint_not_allowed)
    ├── RateLimitError                 429    requests | tokens | insufficient_quota  (Retry-After)
    ├── PolicyRejectedError            4xx    invalid_request_error  (a plugin's reject verdict)
    ├── ServiceUnavailableError        503    server_error           (limits_unavailable, plugin_failed)
    ├── NoHealthyTargetError           503    upstream_error         (code no_healthy_target)
    └── UpstreamError                  502    upstream_error
        ├── UpstreamBadAnswerError     502    upstream_error         (a 2xx that is not what the endpoint speaks)
        ├── UpstreamUnreachableError   502    upstream_error         (code upstream_unreachable)
        ├── UpstreamTimeoutError       504    upstream_error         (code upstream_timeout)
        └── StreamTruncatedError       502    upstream_error         (code stream_truncated)

Every error renders as OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.
Messages never contain secrets: callers build them from request data and exception class
names, never from headers or backend settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from gateway.routing.plan import RoutePlan


# OpenAI's answer to a body that is not JSON (Chat Completions and its other endpoints, Responses).
NOT_JSON = ("We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
            "your HTTP library correctly. The OpenAI API expects a JSON payload.)")


def type_name(value: Any) -> str:
    """A JSON value's type as OpenAI's 400s name it ("expected an object, but got a string instead")."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), "a value")


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> bytes:
    """Serialise one OpenAI-format error object to JSON bytes."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def upstream_error_body(status: int, body: bytes) -> bytes:
    """Keep an upstream error body that is already OpenAI-shaped; wrap anything else."""
    try:
        parsed = orjson.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            return body
    except orjson.JSONDecodeError:
        pass
    text = body[:2000].decode("utf-8", "replace").strip() or f"upstream answered HTTP {status}"
    return error_body(text, "upstream_error", None, str(status))


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
    """The request body exceeds ``server.body_limit_bytes``, an upload ``server.upload_limit_bytes`` (413)."""

    status = 413
    code = "payload_too_large"


class UnsupportedEncodingError(InvalidRequestError):
    """The request body's ``Content-Encoding`` is not one the gateway decodes (415)."""

    status = 415
    code = "unsupported_media_type"


class AuthenticationError(GatewayError):
    """No key, or not a known virtual key (401). The message never repeats the key."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    """The key may not use the requested model (403)."""

    status = 403
    type = "invalid_request_error"
    code = "model_not_allowed"


class RateLimitError(GatewayError):
    """Over a rate, token, concurrency or budget limit (429).

    ``type_`` follows OpenAI (``requests``, ``tokens``, ``insufficient_quota``); ``headers``
    carry ``Retry-After`` and the ``x-ratelimit-*`` headers.
    """

    status = 429
    type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, type_: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message, code=code, headers=headers)
        if type_ is not None:
            self.type = type_


class PolicyRejectedError(GatewayError):
    """A plugin rejected the request (its verdict's status, 400 by default)."""

    status = 400
    type = "invalid_request_error"
    code = "request_rejected"

    def __init__(self, message: str, *, status: int = 400, code: str | None = None):
        super().__init__(message, code=code)
        self.status = status


class ServiceUnavailableError(GatewayError):
    """A policy component that must answer could not (limits store down with fail-closed, a
    failing plugin with ``on_error: reject``) (503)."""

    status = 503
    type = "server_error"
    code = "service_unavailable"


class NoHealthyTargetError(GatewayError):
    """Every target of the model is skipped (circuit open, context window too small) (503).

    ``plan`` carries the routing decision, for provenance in the log row.
    """

    status = 503
    type = "upstream_error"
    code = "no_healthy_target"

    def __init__(self, message: str, *, plan: RoutePlan | None = None):
        super().__init__(message)
        self.plan = plan


class UpstreamError(GatewayError):
    """The backend failed in a way that is not a response we can pass through (502)."""

    status = 502
    type = "upstream_error"
    code = "upstream_error"


class UpstreamBadAnswerError(UpstreamError):
    """The backend answered 2xx with a body the endpoint does not speak (an HTML page, a cut
    JSON body, a stream request answered with neither events nor JSON) (502); a failure of
    class ``5xx`` for retries and fallbacks."""


class UpstreamUnreachableError(UpstreamError):
    """The backend could not be connected to (502)."""

    code = "upstream_unreachable"


class UpstreamTimeoutError(UpstreamError):
    """The backend did not answer within a configured timeout (504)."""

    status = 504
    code = "upstream_timeout"


class StreamTruncatedError(UpstreamError):
    """The backend's stream ended before every choice finished, without ``data: [DONE]``
    (reported in-band as an SSE event)."""

    code = "stream_truncated"
