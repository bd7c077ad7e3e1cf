"""Conformance harness: load provider fixtures and run them, pure and through the gateway.

Fixtures live in ``tests/contract/fixtures/<backend type>/<case>.json``; ``_adapter.json``
beside them holds the type's defaults (``target_model``, ``base_path`` where the backend's
``base_url`` points on the fake upstream, ``backend`` settings). A case file::

    {
      "about": "what the case shows",
      "skip": "why this backend cannot do it",            # only for a required case it lacks
      "backend": {...},                                    # Backend fields over the defaults
      "target_model": "...",                               # over the default
      "request": {"endpoint": "chat/completions", "body": {...}},      # what the client sends
      "upstream_request": {"path": "messages", "query": "", "headers": {...},
                           "absent_headers": [...], "body": {...}},   # what the backend receives
      "upstream_response": {"status": 200, "headers": {...}, "json": {...}}
                         | {"status": 200, "sse": [event, ...]},      # what the backend answers
      "response": {"status": 200, "json": {...} | "as_upstream"}
                | {"status": 200, "events": [chunk, ..., "[DONE]"] | "as_upstream"}
                | {"status": 400, "error": {"type": ..., "param": ..., "message_contains": ...}}
    }

An SSE ``event`` is a raw string (sent as is) or ``{"event": name, "data": object or string}``
(``event`` optional). ``"created": "<now>"`` in an expected chunk or body accepts any integer
(the translator stamps the time); a string ending in ``<unique>`` accepts any string with
that prefix (ids made up per response). A case with ``response.error`` and no
``upstream_request`` is refused by the gateway: the backend must receive nothing.

The body the adapter sees is the one the gateway builds: the client's, with the target's
model name and, for streams, ``stream_options.include_usage`` forced on; what the client
receives passes through ``StreamTee`` (which hides the usage chunk from clients that did not
ask), exactly as in ``gateway/proxy/handlers.py``.
"""

from __future__ import annotations

import json
import random
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gateway.config.models import Backend
from gateway.core.context import RequestContext
from gateway.core.errors import upstream_error_body
from gateway.core.sse import SSESplitter, event_data
from gateway.providers import ADAPTERS, adapter_for
from gateway.proxy.streaming import StreamTee

FIXTURES = Path(__file__).parent / "fixtures"
API_KEY = "sk-test-key"
PUBLIC_MODEL = "chat"
NOW = "<now>"
UNIQUE = "<unique>"

# Every backend type answers (or explicitly skips, with a reason) each of these.
REQUIRED_CASES = ("plain_chat", "plain_chat_stream", "system_prompt", "multi_turn", "tools_parallel",
                  "tools_parallel_stream", "image_input", "stop_sequences", "max_tokens_finish",
                  "usage_cached_tokens", "error_mapping", "mid_stream_error")


def backend_types() -> list[str]:
    """Every backend type the config accepts plus every registered adapter."""
    declared = typing.get_args(Backend.model_fields["type"].annotation)
    return sorted(set(declared) | set(ADAPTERS))


@dataclass
class Case:
    adapter: str
    name: str
    data: dict[str, Any]
    defaults: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.adapter}-{self.name}"

    def get(self, key: str, default=None):
        return self.data.get(key, default)

    @property
    def target_model(self) -> str:
        return self.data.get("target_model") or self.defaults.get("target_model") or "up-model"

    @property
    def backend_settings(self) -> dict[str, Any]:
        return {**self.defaults.get("backend", {}), **self.data.get("backend", {})}

    def backend(self, base_url: str = "http://upstream.invalid/v1") -> Backend:
        settings = {"type": self.adapter, **self.backend_settings}
        if self.adapter != "mock":
            settings.setdefault("base_url", base_url)
            settings.setdefault("api_key", API_KEY)
        return Backend(**settings)

    @property
    def endpoint(self) -> str:
        return self.data["request"].get("endpoint", "chat/completions")

    @property
    def client_body(self) -> dict[str, Any]:
        return self.data["request"]["body"]

    @property
    def stream(self) -> bool:
        return self.client_body.get("stream") is True

    @property
    def client_wants_usage(self) -> bool:
        options = self.client_body.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True

    def gateway_body(self) -> dict[str, Any]:
        """The body the gateway hands the adapter (see ``ProxyHandlers.forward``)."""
        body = {**self.client_body, "model": self.target_model}
        if self.stream and self.endpoint in ("chat/completions", "completions") and not self.client_wants_usage:
            options = body.get("stream_options")
            body["stream_options"] = {**options, "include_usage": True} if isinstance(options, dict) \
                else {"include_usage": True}
        return body

    @property
    def refused(self) -> bool:
        """The gateway answers this case itself (400) without calling the backend."""
        return "error" in self.data.get("response", {}) and "upstream_request" not in self.data


def load_cases() -> list[Case]:
    cases = []
    for folder in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
        defaults_file = folder / "_adapter.json"
        defaults = json.loads(defaults_file.read_text()) if defaults_file.exists() else {}
        for path in sorted(folder.glob("*.json")):
            if path.name.startswith("_"):
                continue
            cases.append(Case(folder.name, path.stem, json.loads(path.read_text()), defaults))
    return cases


# --- encoding and comparing ---------------------------------------------------------------------
def encode_event(event: Any) -> bytes:
    if isinstance(event, str):
        return event.encode()
    data = event["data"]
    payload = data if isinstance(data, str) else orjson.dumps(data).decode()
    head = f"event: {event['event']}\n" if "event" in event else ""
    return f"{head}data: {payload}\n\n".encode()


def upstream_chunks(case: Case) -> list[bytes]:
    return [encode_event(e) for e in case.data["upstream_response"]["sse"]]


def upstream_events_as_openai(case: Case) -> list[Any]:
    """The data of each upstream event, parsed (for ``"events": "as_upstream"``)."""
    return parse_events(b"".join(upstream_chunks(case)))


def parse_events(body: bytes) -> list[Any]:
    """OpenAI SSE bytes → a list of parsed ``data`` payloads (``"[DONE]"`` kept as a string).

    Fails on an event without data (the translators send none) or unterminated bytes."""
    splitter = SSESplitter()
    out = []
    for raw in splitter.feed(body):
        data = event_data(raw)
        assert data is not None, f"event without data: {raw!r}"
        out.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    assert not splitter.tail(), f"unterminated bytes at the end: {splitter.tail()!r}"
    return out


def _match_now(expected: Any, actual: Any) -> Any:
    """Fill ``expected``'s placeholders from ``actual``: ``"created": "<now>"`` takes any
    integer, a string ending in ``<unique>`` any string with the same prefix (an id the backend
    makes up per response); nested objects and lists too."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = {}
        for key, value in expected.items():
            got = actual.get(key)
            if key == "created" and value == NOW:
                assert isinstance(got, int), actual
                out[key] = got
            else:
                out[key] = _match_now(value, got)
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        return [_match_now(e, a) for e, a in zip(expected, actual)] + expected[len(actual):]
    if isinstance(expected, str) and expected.endswith(UNIQUE) and isinstance(actual, str):
        prefix = expected[:-len(UNIQUE)]
        return actual if actual.startswith(prefix) and len(actual) > len(prefix) else expected
    return expected


def assert_same_json(actual: Any, expected: Any) -> None:
    assert actual == _match_now(expected, actual), (
        f"\nexpected: {json.dumps(expected, indent=1)}\nactual:   {json.dumps(actual, indent=1)}")


def assert_same_events(actual: list[Any], expected: list[Any]) -> None:
    expected = [_match_now(e, a) for e, a in zip(expected, actual)] + expected[len(actual):]
    assert actual == expected, (
        "\n" + "\n".join(f"expected: {json.dumps(e)}" for e in expected)
        + "\n" + "\n".join(f"actual:   {json.dumps(a)}" for a in actual))


def expected_events(case: Case) -> list[Any]:
    events = case.data["response"]["events"]
    return upstream_events_as_openai(case) if events == "as_upstream" else events


def expected_json(case: Case) -> Any:
    body = case.data["response"]["json"]
    return case.data["upstream_response"]["json"] if body == "as_upstream" else body


def assert_error(status: int, body: Any, case: Case) -> None:
    spec = case.data["response"]
    assert status == spec["status"], (status, body)
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    for key, value in spec["error"].items():
        if key == "message_contains":
            assert value in error["message"], error
        else:
            assert error[key] == value, (key, error)


def headers_check(headers: dict[str, str], case: Case) -> None:
    spec = case.data["upstream_request"]
    low = {k.lower(): v for k, v in headers.items()}
    for name, value in spec.get("headers", {}).items():
        assert low.get(name.lower()) == value, (name, low)
    for name in spec.get("absent_headers", ()):
        assert name.lower() not in low, (name, low)


# --- the pure path (what BackendClient and the handler do, without the network) -----------------
def pure_request(case: Case) -> tuple[str, str, dict[str, str], bytes]:
    """``(path, query, headers, body)`` the adapter produces for the case."""
    adapter = adapter_for(case.adapter)
    backend = case.backend()
    body = case.gateway_body()
    raw = orjson.dumps(body)
    headers = {"Content-Type": "application/json", **backend.headers, **adapter.static_headers(backend)}
    if adapter.identity:
        return case.endpoint, "", headers, raw
    translating = getattr(adapter, "translates_responses", False)
    req = adapter.build_request(case.endpoint, body, None if translating else raw, case.target_model, backend)
    return req.path, req.query, {**headers, **(req.headers or {})}, req.body


def pure_response(case: Case) -> tuple[int, bytes]:
    """``(status, body)`` the client gets for a non-streamed upstream answer."""
    adapter = adapter_for(case.adapter)
    spec = case.data["upstream_response"]
    body = orjson.dumps(spec["json"]) if not isinstance(spec["json"], str) else spec["json"].encode()
    status = spec["status"]
    if getattr(adapter, "translates_responses", False):
        if status >= 400:
            status, body = adapter.map_error(status, body)
        else:
            body = adapter.parse_response(case.endpoint, body)
    if status >= 400:
        body = upstream_error_body(status, body)
    return status, body


def pure_stream(case: Case, reads: list[bytes]) -> tuple[bytes, StreamTee]:
    """The bytes the client gets for an upstream stream arriving in ``reads``, and the tee."""
    adapter = adapter_for(case.adapter)
    if getattr(adapter, "translates_responses", False):
        decoder = adapter.stream_decoder(case.endpoint, case.gateway_body())
        translated = [decoder.feed(r) for r in reads] + [decoder.finish()]
    else:
        translated = list(reads)
    ctx = RequestContext(request_id="t", endpoint=case.endpoint, t_start=0.0, ts_start=0.0)
    tee = StreamTee(ctx, strip_usage=not case.client_wants_usage)
    out = b"".join(tee.feed(t, 0.0) for t in translated if t) + tee.tail()
    return out, tee


def recut(chunks: list[bytes], size: int) -> list[bytes]:
    whole = b"".join(chunks)
    return [whole[i:i + size] for i in range(0, len(whole), size)]


# --- through the gateway ------------------------------------------------------------------------
def gateway_config(case: Case, upstream_root: str) -> str:
    """A config (JSON is YAML) with backend ``up`` of the case's type serving model ``chat``."""
    backend: dict[str, Any] = {"type": case.adapter, **case.backend_settings}
    if case.adapter != "mock":
        backend.setdefault("base_url", upstream_root + case.defaults.get("base_path", "/v1"))
        backend.setdefault("api_key", API_KEY)
    if case.adapter == "vllm":
        # The scripted upstream serves no /metrics or /health: scraping it would take the backend
        # out of rotation after two scrapes (~1 s), and a slow start-up on a busy machine would
        # then answer the case with 503 instead of the scripted answer.
        backend.setdefault("vllm", {"enabled": False})
    config = {"backends": {"up": backend},
              "models": {PUBLIC_MODEL: {"targets": [{"backend": "up", "model": case.target_model}],
                                        "retry": {"attempts": 1}}},
              "telemetry": {"enabled": False}}  # not under test here; keeps each gateway light
    return json.dumps(config)


# --- what a chat answer says (inbound protocols compare their answers with it) -------------------
def chat_usage(usage: dict[str, Any] | None) -> tuple | None:
    """``(prompt, cached, completion)`` tokens of a chat ``usage`` (None: none reported)."""
    if not usage:
        return None
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return usage["prompt_tokens"], cached, usage["completion_tokens"]


def chat_json_says(answer: dict[str, Any]) -> dict[str, Any]:
    """A chat completion → its text, reasoning, tool calls ``(id, name, arguments)``, finish and usage."""
    message = answer["choices"][0]["message"]
    return {"text": message.get("content") or "", "reasoning": message.get("reasoning_content") or "",
            "tools": [(c["id"], c["function"]["name"], orjson.loads(c["function"]["arguments"] or "{}"))
                      for c in message.get("tool_calls") or ()],
            "finish": answer["choices"][0]["finish_reason"], "usage": chat_usage(answer.get("usage"))}


def chat_events_say(events: list[Any]) -> dict[str, Any]:
    """A chat chunk stream (parsed events) → what ``chat_json_says`` reads, and an in-band ``error``."""
    text, reasoning, calls, finish, usage, error = "", "", {}, None, None, None
    for event in events:
        if not isinstance(event, dict):
            continue
        if "error" in event:
            error = event["error"]["message"]
        usage = chat_usage(event.get("usage")) or usage
        for choice in event.get("choices") or ():
            delta = choice.get("delta") or {}
            text += delta.get("content") or ""
            reasoning += delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or ():
                got = calls.setdefault(call["index"], ["", "", ""])
                fn = call.get("function") or {}
                got[0] = call.get("id") or got[0]
                got[1] = fn.get("name") or got[1]
                got[2] += fn.get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    return {"text": text, "reasoning": reasoning, "finish": finish, "usage": usage, "error": error,
            "tools": [(i, n, orjson.loads(a or "{}")) for i, n, a in (calls[k] for k in sorted(calls))]}


def script_upstream(upstream: Any, case: Case) -> dict[str, Any] | None:
    """Have the fake ``upstream`` answer what ``case`` scripts (a stream re-cut at random, seeded
    by the case); returns the case's ``upstream_response`` (None: the backend is not asked)."""
    spec = case.data.get("upstream_response")
    if spec is not None and "sse" in spec:
        upstream.sse(recut_randomly(upstream_chunks(case), random.Random(case.id)), headers=spec.get("headers"))
    elif spec is not None:
        upstream.json(spec["json"] if not isinstance(spec["json"], str) else spec["json"].encode(),
                      status=spec["status"], headers=spec.get("headers"))
    return spec


def recut_randomly(chunks: list[bytes], rng: Any) -> list[bytes]:
    """The bytes of ``chunks`` cut again at up to 20 random places (``rng``: a ``random.Random``)."""
    whole = b"".join(chunks)
    cuts = sorted(rng.sample(range(1, len(whole)), min(len(whole) - 1, rng.randint(1, 20))))
    return [whole[a:b] for a, b in zip([0, *cuts], [*cuts, len(whole)], strict=True)]
