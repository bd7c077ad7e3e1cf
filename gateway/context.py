"""``RequestContext``: everything one client request accumulates on its way through.

Times are ``time.perf_counter()`` seconds (monotonic) except ``ts_start``/``ts_end``, which are
Unix epoch seconds for log rows. Token counts are integers; ``None`` means unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Usage:
    """Token usage as OpenAI reports it (``usage`` object), flattened."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None

    @classmethod
    def from_openai(cls, usage: dict[str, Any]) -> "Usage":
        """Build from an OpenAI ``usage`` dict (chat, completions or embeddings shape)."""
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return cls(
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            total_tokens=usage.get("total_tokens"),
            cached_tokens=prompt_details.get("cached_tokens"),
            reasoning_tokens=completion_details.get("reasoning_tokens"),
        )


@dataclass(slots=True)
class RequestContext:
    """State of one client request.

    ``body`` is the decoded JSON request (a dict; unknown fields are kept untouched).
    ``endpoint`` is the path below ``/v1`` (``chat/completions``). The remaining fields are
    filled as the request progresses and read by telemetry at the end.
    """

    request_id: str
    endpoint: str
    t_start: float
    ts_start: float
    body: dict[str, Any] | None = None
    raw_body: bytes = b""
    model_requested: str = ""
    stream: bool = False
    client_wants_usage: bool = False
    client_ip: str = ""
    user_agent: str = ""
    backend: str = ""
    provider: str = ""
    upstream_model: str = ""
    model_served: str = ""
    attempts: int = 0
    status_code: int = 0
    error_type: str = ""
    error_message: str = ""
    finish_reason: str = ""
    truncated: bool = False
    usage: Usage = field(default_factory=Usage)
    t_upstream_start: float | None = None
    t_upstream_headers: float | None = None
    t_first_token: float | None = None
    t_end: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    completion_text: list[str] = field(default_factory=list)
