"""``RequestContext``: everything one client request accumulates on its way through.

Times are ``time.perf_counter()`` seconds (monotonic) except ``ts_start``/``ts_end``, which are
Unix epoch seconds for log rows. Token counts are integers; ``None`` means unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Usage:
    """Token usage as OpenAI reports it (``usage`` object), flattened.

    ``cached_tokens``: prompt tokens read from the provider's prompt cache;
    ``cache_write_tokens``: prompt tokens written to it (Anthropic's
    ``cache_creation_input_tokens``, carried as ``prompt_tokens_details.cache_write_tokens``;
    OpenAI reports none). Both are part of ``prompt_tokens``, as reasoning tokens are of
    ``completion_tokens``.

    Tokens that are not text, billed at rates of their own: ``audio_tokens`` and
    ``image_tokens`` of the input (``prompt_tokens_details`` in chat; ``input_tokens_details``
    in image generation; ``input_token_details`` in transcription), inside ``prompt_tokens``;
    ``audio_output_tokens`` (``completion_tokens_details.audio_tokens``), inside
    ``completion_tokens``. ``audio_seconds``: the input audio's duration, for models billed by
    it (whisper-1's ``{"type": "duration", "seconds": N}``, which reports no tokens).
    """

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    cache_write_tokens: int | None = None
    audio_tokens: int | None = None
    image_tokens: int | None = None
    audio_output_tokens: int | None = None
    audio_seconds: float | None = None

    def reported(self) -> bool:
        """Whether the backend reported what it bills (tokens, or a duration)."""
        return self.prompt_tokens is not None or self.completion_tokens is not None or self.audio_seconds is not None

    @classmethod
    def from_openai(cls, usage: Any) -> Usage:
        """Build from an OpenAI ``usage`` dict (chat, completions or embeddings shape)."""
        return cls._read(usage, "prompt_tokens", "completion_tokens", "prompt_tokens_details",
                         "completion_tokens_details")

    @classmethod
    def from_responses(cls, usage: Any) -> Usage:
        """Build from a Responses API ``usage`` dict (``input_tokens``/``output_tokens``; cached
        and cache-write tokens inside the input, reasoning tokens inside the output, as above)."""
        return cls._read(usage, "input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details")

    @classmethod
    def from_any(cls, usage: Any) -> Usage:
        """Build from a ``usage`` dict of either shape: ``prompt_tokens``… (chat, completions,
        embeddings) or ``input_tokens``/``output_tokens`` (Responses, image generation, audio),
        or a transcription's ``{"type": "duration", "seconds": N}``."""
        if type(usage) is dict and "prompt_tokens" not in usage:
            if "input_tokens" in usage or "output_tokens" in usage:
                return cls.from_responses(usage)
            if usage.get("type") == "duration":
                seconds = usage.get("seconds")  # (bool is not a duration; JSON has no inf or NaN)
                if isinstance(seconds, (int, float)) and type(seconds) is not bool and seconds >= 0:
                    return cls(audio_seconds=float(seconds))
                return cls()
        return cls.from_openai(usage)

    @classmethod
    def _read(cls, usage: Any, prompt: str, completion: str, prompt_details: str,
              completion_details: str) -> Usage:
        # The backend's JSON as it came: what is not a count (a string, a float, a list where
        # an object belongs) is unknown, never an error in the middle of a relay.
        if type(usage) is not dict:
            return cls()
        inputs = usage.get(prompt_details)
        if inputs is None and prompt_details == "input_tokens_details":  # transcription's spelling
            inputs = usage.get("input_token_details")
        outputs = usage.get(completion_details)
        inputs = inputs if type(inputs) is dict else {}
        outputs = outputs if type(outputs) is dict else {}
        return cls(
            prompt_tokens=_count(usage.get(prompt)),
            completion_tokens=_count(usage.get(completion)),
            total_tokens=_count(usage.get("total_tokens")),
            cached_tokens=_count(inputs.get("cached_tokens")),
            reasoning_tokens=_count(outputs.get("reasoning_tokens")),
            cache_write_tokens=_count(inputs.get("cache_write_tokens")),
            audio_tokens=_count(inputs.get("audio_tokens")),
            image_tokens=_count(inputs.get("image_tokens")),
            audio_output_tokens=_count(outputs.get("audio_tokens")),
        )


def _count(value: Any) -> int | None:
    return value if type(value) is int else None  # (bool is not a count)


@dataclass(slots=True)
class Attempt:
    """One upstream attempt of a request (a row of ``llm_attempts``).

    Times are ``perf_counter`` seconds; ``t_first_byte``: first token (streams) or response
    body (non-streamed) arrived; ``None`` when it never did.
    """

    backend: str
    provider: str = ""
    model: str = ""
    t_start: float = 0.0
    t_end: float | None = None
    t_first_byte: float | None = None
    status_code: int = 0
    error_type: str = ""
    backoff_ms: float = 0.0  # waited before this attempt (retry backoff / Retry-After)
    span_id: int = 0  # its CLIENT span's id, sent upstream in ``traceparent`` (tracing on; else 0)


@dataclass(slots=True)
class RequestContext:
    """State of one client request.

    ``body`` is the decoded JSON request (a ``RequestBody`` dict; unknown fields are kept
    untouched). The outcome fields (``status_code``, ``error_type``, ``error_message``,
    ``truncated``) are written only through ``gateway.core.outcome``.
    ``endpoint`` is the path below ``/v1`` (``chat/completions``). The remaining fields are
    filled as the request progresses and read by telemetry at the end.
    """

    request_id: str  # the gateway's own id (a UUID), the row's request_id
    endpoint: str
    t_start: float
    ts_start: float
    # The decoded request (a ``RequestBody``: a dict that keeps the client's bytes and knows
    # whether a stage changed it); a stage may also put a plain dict here (read as changed).
    body: dict[str, Any] | None = None
    model_requested: str = ""
    stream: bool = False
    client_wants_usage: bool = False
    # Set for a request that is not a JSON body naming a model (an upload, a GET on a file, a
    # model-less POST): how to send it (``gateway.proxy.passthrough.Passthrough``).
    passthrough: Any = None
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
    refusal: bool = False  # the answer carried a refusal (chat `message.refusal` / `delta.refusal`)
    truncated: bool = False
    stream_done: bool = False  # the stream is whole ([DONE] or a typed stream's final event passed on,
    # or it ended after every choice finished)
    usage: Usage = field(default_factory=Usage)
    t_upstream_start: float | None = None
    t_upstream_headers: float | None = None
    t_first_token: float | None = None
    t_end: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    completion_text: list[str] = field(default_factory=list)
    # --- read by telemetry (filled by later stages; parsed lazily off the request path) ---
    headers: Any = None  # the client's request headers (read-only mapping) for metadata, traceparent
    response_body: bytes | None = None  # a non-streamed answer as sent (bodies logging)
    config_hash: str = ""  # hash of the config snapshot that served the request
    tenant: str = ""
    api_key_id: str = ""  # an id of the client's key, never the key
    metadata: dict[str, str] | None = None  # caller metadata set by stages (merged with header/body)
    prompt_id: str = ""
    prompt_version: int | None = None
    prompt_label: str = ""
    experiment_arm: str = ""  # "<label>:<version>" when a weighted prompt label chose the version
    adapter: str = ""  # the LoRA adapter (config ``adapters:``) that answered, and its version
    adapter_version: int | None = None
    route_rule: str = ""
    # "none" until the cache stage runs: a request refused before it never reached the cache
    # and must not count as a miss in any hit ratio.
    cache_status: str = "none"
    cache_saved_ms: float | None = None  # a cache hit: the original answer's latency (ms)
    cache_distance: float | None = None  # a semantic hit: cosine distance of the served entry's question
    cache_entry_id: str = ""  # a semantic hit: the id of the entry served
    attempt_log: list[Attempt] | None = None  # one entry per upstream attempt (routing fills it)
    strategy: str = ""  # routing strategy that ordered the targets
    route_candidates: list[dict[str, Any]] | None = None  # provenance: [{"target", "score", "skipped"}]
    target_state: Any = None  # routing.health.TargetState of the answering target, held in flight
    # --- set by the handler for stages ---
    request: Any = None  # the aiohttp web.Request
    inbound: Any = None  # gateway.inbound.base.Inbound: the protocol of an endpoint other than chat (/v1/messages)
    conversation: Any = None  # a /v1/responses turn (gateway.inbound.responses.turn.Turn): previous_response_id
    # For the admin key: the tenant that owns the object the path names (gateway.ownership), so
    # what the gateway keeps per tenant (a translated response) is found for it; "" otherwise.
    object_owner: str = ""
    runtime: Any = None  # the runtime.Runtime (config snapshot) this request runs on, start to end
    # Stages that need the answer (cache) set these: every byte sent to the client is appended
    # to ``capture`` and passed to ``on_bytes`` (coalesced followers) as it is sent.
    capture: list[bytes] | None = None
    on_bytes: Any = None
    # --- set by the access stage (gateway.access.auth) ---
    response_headers: dict[str, str] | None = None  # merged into every response (x-ratelimit-*)
    access: Any = None  # auth.Grant of the request's virtual key (policy, limit reservation)
    # --- set by observability (gateway.observability) when tracing is on ---
    trace: Any = None  # tracing.TraceIds: trace id, SERVER span id, sampled; adds traceparent upstream
    trace_id: str = ""  # 32 hex digits: the trace of this request (the row's trace_id)
    response_id: str = ""  # the upstream answer's ``id`` (chatcmpl-…), for gen_ai.response.id
    # --- sessions and chains (gateway.cli.sessions, gateway.chains) ---
    session_id: str = ""  # set by a chain for its steps; else the row reads x-gateway-session-id
    parent_request_id: str = ""  # the parent's request id (a chain step: the chain request's)
    client_request_id: str = ""  # the client's own x-request-id (echoed back; never the row's id)
    chain_steps: list[RequestContext] | None = None  # a chain request: its steps' contexts (the row sums them)
    # A chain's retrieve steps (gateway.chains): the chunks they found, in order, and their distances.
    retrieved_chunks: list[str] | None = None
    retrieved_distances: list[float] | None = None

    @property
    def x_request_id(self) -> str:
        """The ``x-request-id`` answered to the client: its own when it sent one, else ours."""
        return self.client_request_id or self.request_id
