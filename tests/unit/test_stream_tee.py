"""The stream tee gives the same bytes and the same observations whatever the read shapes."""

from __future__ import annotations

import pytest

from gateway.core.context import RequestContext
from gateway.proxy.streaming import StreamTee
from tests.support.fake_upstream import chat_chunk, sse_event

USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
MULTILINE = (b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",\n'
             b'data: "choices":[{"index":0,"delta":{"content":"!"},"finish_reason":null}],"usage":null}\n\n')


def _events() -> list[bytes]:
    with_null = [sse_event({**chat_chunk(p), "usage": None}) for p in ("Hel", "lo", " 世界")]
    return [b": keep-alive\n\n", sse_event({**chat_chunk(role=True), "usage": None}), *with_null, b"\n\n",
            MULTILINE, sse_event({**chat_chunk(finish="stop"), "usage": None}),
            sse_event(chat_chunk(choices=False, usage=USAGE)), b"data: [DONE]\n\n"]


def _shapes(whole: bytes, events: list[bytes]) -> dict[str, list[bytes]]:
    return {
        "one read per event": events,
        "all in one read": [whole],
        "pairs": [b"".join(events[i:i + 2]) for i in range(0, len(events), 2)],
        "threes": [b"".join(events[i:i + 3]) for i in range(0, len(events), 3)],
        "7-byte cuts": [whole[i:i + 7] for i in range(0, len(whole), 7)],
        "byte by byte": [whole[i:i + 1] for i in range(len(whole))],
    }


def _run(reads: list[bytes], strip: bool) -> tuple[bytes, tuple]:
    ctx = RequestContext(request_id="r", endpoint="chat/completions", t_start=0.0, ts_start=0.0)
    tee = StreamTee(ctx, strip)
    out = b"".join(tee.feed(data, float(i)) for i, data in enumerate(reads)) + tee.tail()
    seen = (ctx.completion_text, ctx.finish_reason, ctx.model_served, ctx.response_id, ctx.usage,
            len(ctx.chunk_times), tee.done, ctx.stream_done, tee.upstream_error)
    return out, seen


@pytest.mark.parametrize("strip", [False, True])
def test_every_read_shape_relays_and_observes_the_same(strip):
    events = _events()
    whole = b"".join(events)
    outputs = {name: _run(reads, strip) for name, reads in _shapes(whole, events).items()}
    reference_out, reference_seen = outputs["byte by byte"]
    for name, (out, seen) in outputs.items():
        assert out == reference_out, name
        assert seen == reference_seen, name
    if strip:  # the client did not ask for usage: neither the usage chunk nor the null members reach it
        assert b'"usage"' not in reference_out
    else:
        assert reference_out == whole
    text, finish, model, _, usage, produced, done, stream_done, error = reference_seen
    assert "".join(text) == "Hello 世界!" and finish == "stop" and model
    assert usage.total_tokens == 5 and produced == 4 and done and stream_done and error is None


def test_crlf_stream_in_any_shape_is_forwarded_unchanged():
    events = [e.replace(b"\n", b"\r\n") for e in _events()]
    whole = b"".join(events)
    for name, reads in _shapes(whole, events).items():
        out, seen = _run(reads, strip=False)
        assert out == whole, name
        assert seen[6] and "".join(seen[0]) == "Hello 世界!", name
