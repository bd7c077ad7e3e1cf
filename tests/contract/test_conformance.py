"""One conformance suite for every backend type, driven by ``fixtures/<type>/<case>.json``.

Each case runs twice: pure (the adapter's functions and the stream tee, no network; streams
also re-cut into 1-read and 7-byte reads) and end to end (an OpenAI client request through a
real gateway to the scriptable fake upstream). Adding a provider = its adapter in the
registry + a fixtures folder with every case in ``REQUIRED_CASES``; the suite picks it up.
See ``harness.py`` for the fixture format.
"""

from __future__ import annotations

import httpx
import orjson
import pytest

from gateway.config.models import Backend
from gateway.core.errors import InvalidRequestError
from gateway.providers import InProcessProvider, adapter_for
from gateway.providers.base import Capabilities
from tests.contract import harness as h

CASES = h.load_cases()
ACTIVE = [c for c in CASES if not c.get("skip")]


def _params(cases, pred):
    return [pytest.param(c, id=c.id) for c in cases if pred(c)]


def _has_upstream_request(c):
    return c.adapter != "mock" and "upstream_request" in c.data


def _has_json_answer(c):
    return c.adapter != "mock" and "json" in c.get("upstream_response", {})


def _has_stream_answer(c):
    return c.adapter != "mock" and "sse" in c.get("upstream_response", {})


# --- coverage: every backend type has every case --------------------------------------------
@pytest.mark.parametrize("backend_type", h.backend_types())
def test_every_backend_type_has_all_required_cases(backend_type):
    names = {c.name: c for c in CASES if c.adapter == backend_type}
    missing = [n for n in h.REQUIRED_CASES if n not in names]
    assert not missing, f"fixtures/{backend_type}/ lacks {missing}"
    for name in h.REQUIRED_CASES:
        skip = names[name].get("skip")
        assert skip is None or (isinstance(skip, str) and len(skip) > 10), "a skipped case says why"


@pytest.mark.parametrize("backend_type", [t for t in h.backend_types() if t != "mock"])
def test_adapter_implements_the_interface(backend_type):
    adapter = adapter_for(backend_type)
    assert adapter is not None and adapter.name == backend_type
    assert isinstance(adapter.identity, bool) and isinstance(adapter.capabilities, Capabilities)
    for method in ("static_headers", "build_request", "parse_response", "stream_decoder", "map_error"):
        assert callable(getattr(adapter, method))
    if getattr(adapter, "translates_responses", False):
        assert not adapter.identity
        status, body = adapter.map_error(500, b"")  # the status alone, as TranslatedResponse asks
        assert status == 500 and body == b""


def test_every_backend_type_has_a_provider_in_the_registry():
    """``mock`` too: it is found like the others, by type, and answers in-process (no HTTP)."""
    for backend_type in h.backend_types():
        assert adapter_for(backend_type) is not None, backend_type
    mock = adapter_for("mock")
    assert isinstance(mock, InProcessProvider) and mock.name == "mock"
    assert not any(isinstance(adapter_for(t), InProcessProvider) for t in h.backend_types() if t != "mock")
    answer = mock.answer("chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, "m",
                         Backend(type="mock"))
    assert answer.status == 200 and answer.headers["Content-Type"] == "application/json"
    refused = mock.answer("chat/completions", {}, "m", Backend(type="mock"))
    assert refused.status == 400


# --- pure translation ---------------------------------------------------------------------------
@pytest.mark.parametrize("case", _params(ACTIVE, _has_upstream_request))
def test_request_translation(case):
    path, query, headers, body = h.pure_request(case)
    spec = case.data["upstream_request"]
    assert path == spec["path"]
    assert query == spec.get("query", "")
    h.headers_check(headers, case)
    h.assert_same_json(orjson.loads(body), spec["body"])


@pytest.mark.parametrize("case", _params(ACTIVE, lambda c: c.refused and c.adapter != "mock"))
def test_unsupported_request_is_refused(case):
    with pytest.raises(InvalidRequestError) as info:
        h.pure_request(case)
    exc = info.value
    h.assert_error(exc.status, orjson.loads(exc.body()), case)


@pytest.mark.parametrize("case", _params(ACTIVE, _has_json_answer))
def test_response_translation(case):
    status, body = h.pure_response(case)
    if "error" in case.data["response"]:
        h.assert_error(status, orjson.loads(body), case)
    else:
        assert status == case.data["response"]["status"]
        h.assert_same_json(orjson.loads(body), h.expected_json(case))


@pytest.mark.parametrize("case", _params(ACTIVE, _has_stream_answer))
@pytest.mark.parametrize("cut", ["as_sent", "one_read", "7_bytes"])
def test_stream_translation(case, cut):
    chunks = h.upstream_chunks(case)
    reads = {"as_sent": chunks, "one_read": [b"".join(chunks)], "7_bytes": h.recut(chunks, 7)}[cut]
    out, tee = h.pure_stream(case, reads)
    events = h.parse_events(out)
    h.assert_same_events(events, h.expected_events(case))
    ends_with_error = bool(events) and isinstance(events[-1], dict) and "error" in events[-1]
    assert tee.done == (events[-1:] == ["[DONE]"])
    assert (tee.upstream_error is not None) == ends_with_error
    if tee.done:
        assert events.count("[DONE]") == 1
        speaking = [e for e in events if isinstance(e, dict) and e.get("choices")]
        assert speaking[0]["choices"][0]["delta"].get("role") == "assistant"  # the first says who speaks


# --- through the gateway ------------------------------------------------------------------------
@pytest.mark.parametrize("case", _params(ACTIVE, lambda c: True))
def test_through_the_gateway(case, upstream, make_gateway):
    root = upstream.url[: -len("/v1")]
    spec = case.data.get("upstream_response")
    if spec is not None:
        if "sse" in spec:
            upstream.sse(h.upstream_chunks(case), headers=spec.get("headers"))
        else:
            upstream.json(spec["json"] if not isinstance(spec["json"], str) else spec["json"].encode(),
                          status=spec["status"], headers=spec.get("headers"))
    gateway = make_gateway(h.gateway_config(case, root))
    url = f"{gateway.url}/v1/{case.endpoint}"
    body = {**case.client_body, "model": h.PUBLIC_MODEL}
    with httpx.stream("POST", url, json=body, timeout=10) as r:
        raw = b"".join(r.iter_bytes())
        status, content_type = r.status_code, r.headers.get("content-type", "")

    if case.adapter != "mock":
        if case.refused:
            assert upstream.received == [], "a refused request must not reach the backend"
        else:
            got = upstream.last
            want = case.data["upstream_request"]
            base_path = case.defaults.get("base_path", "/v1")
            assert got.path == f"{base_path}/{want['path']}"
            assert got.query == want.get("query", "")
            h.headers_check(got.headers, case)
            h.assert_same_json(got.json(), want["body"])

    response = case.data["response"]
    if "error" in response:
        assert content_type.startswith("application/json")
        h.assert_error(status, orjson.loads(raw), case)
    elif "events" in response:
        assert status == response["status"]
        assert content_type.startswith("text/event-stream")
        h.assert_same_events(h.parse_events(raw), h.expected_events(case) if case.adapter != "mock"
                             else response["events"])
    else:
        assert status == response["status"]
        assert content_type.startswith("application/json")
        h.assert_same_json(orjson.loads(raw), h.expected_json(case) if case.adapter != "mock" else response["json"])
