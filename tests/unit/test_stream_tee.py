"""The stream tee gives the same bytes and the same observations whatever the read shapes."""

from __future__ import annotations

import json

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
        "three, then the rest at once": [b"".join(events[:3]), b"".join(events[3:])],
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


# --- chunks read through a template -------------------------------------------------------------
TEXTS = ["Hel", "lo", "", " 世界", 'a "quoted" word', "line\nbreak\ttab", "emoji 😀 \u2028", "back\\slash\\",
         '","finish_reason":"stop', "}]}", "\\u0041", "\x01"]


def _chat(text: str, **extra) -> dict:
    return {"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 7, "model": "up-model",
            "choices": [{"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}], **extra}


def _completion(text: str, **extra) -> dict:
    return {"id": "cmpl-9", "object": "text_completion", "created": 7, "model": "up-model",
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": None}], **extra}


def _spaced(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=True).encode() + b"\n\n"


def _stream(make, encode, **extra) -> list[bytes]:
    first = make("", **extra)
    if make is _chat:
        first["choices"][0]["delta"] = {"role": "assistant", "content": ""}
    last = make("", **extra)
    last["choices"][0]["finish_reason"] = "stop"
    usage = {**make("", **extra), "choices": [], "usage": USAGE}
    return [encode(first), *(encode(make(t, **extra)) for t in TEXTS), encode(last), encode(usage),
            b"data: [DONE]\n\n"]


def _observed(reads: list[bytes], strip: bool, endpoint: str, templates: bool) -> tuple[bytes, tuple, StreamTee]:
    ctx = RequestContext(request_id="r", endpoint=endpoint, t_start=0.0, ts_start=0.0)
    tee = StreamTee(ctx, strip)
    if not templates:
        tee._tries = 0  # read every event whole: the reference
    out = b"".join(tee.feed(data, float(i)) for i, data in enumerate(reads)) + tee.tail()
    seen = (ctx.completion_text, ctx.finish_reason, ctx.model_served, ctx.response_id, ctx.usage,
            ctx.chunk_times, ctx.t_first_token, tee.done, tee.upstream_error)
    return out, seen, tee


STREAMS = {
    "chat, compact": (_chat, sse_event, {"usage": None}, "chat/completions"),
    "chat, no usage member": (_chat, sse_event, {}, "chat/completions"),
    "chat, spaced and ASCII-escaped": (_chat, _spaced, {"usage": None}, "chat/completions"),
    "chat, null refusal and usage first": (_chat, sse_event, {"usage": None, "system_fingerprint": "fp"},
                                           "chat/completions"),
    "completions": (_completion, sse_event, {"usage": None}, "completions"),
    "completions, spaced": (_completion, _spaced, {"usage": None}, "completions"),
}


@pytest.mark.parametrize("strip", [False, True])
@pytest.mark.parametrize("name", list(STREAMS))
def test_templated_chunks_are_read_as_parsing_them_would(name, strip):
    make, encode, extra, endpoint = STREAMS[name]
    events = _stream(make, encode, **extra)
    whole = b"".join(events)
    for shape, reads in _shapes(whole, events).items():
        out, seen, tee = _observed(reads, strip, endpoint, templates=True)
        ref_out, ref_seen, _ = _observed(reads, strip, endpoint, templates=False)
        assert out == ref_out, (name, shape)
        assert seen == ref_seen, (name, shape)
        if shape == "one read per event":
            assert tee._template is not None, name  # the comparison did exercise a template
    assert "".join(seen[0]) == "".join(t for t in TEXTS)  # every text, escapes decoded
    assert len(seen[5]) == len([t for t in TEXTS if t])  # an empty text is no output (TTFT, ITL)


def test_a_chunk_that_only_looks_like_the_template_is_parsed_whole():
    template = sse_event(_chat("x", usage=None))
    before, after = template.split(b'"x"')
    odd = [
        before + b'"y","refusal":"no"' + after,  # two values where the text was: counts as output
        before + b'"","refusal":"no"' + after,
        before + b'"","tool_calls":[{"index":0}]' + after,
        before + b'"a"} , "x": {"b"' + after,  # not one string: parsed whole (here: invalid JSON)
        before + b'"bad \xff byte"' + after,  # invalid UTF-8: the upstream's problem, passed on
        before + b'"raw \n newline"' + after,
    ]
    events = [sse_event(_chat("a", usage=None)), sse_event(_chat("b", usage=None)), *odd,
              sse_event(_chat("c", usage=None)), b"data: [DONE]\n\n"]
    for strip in (False, True):
        out, seen, tee = _observed(events, strip, "chat/completions", templates=True)
        assert (out, seen) == _observed(events, strip, "chat/completions", templates=False)[:2]
        assert tee._template is not None
        assert seen[0] == ["a", "b", "y", "c"] and len(seen[5]) == 6  # y, and the two refusals and tool call


def test_a_field_that_changes_every_chunk_stops_the_learning():
    # Like OpenAI's per-chunk "obfuscation" padding: no template fits the next chunk, so after a
    # few tries the tee parses the rest without trying again; what it reads is unchanged.
    events = [sse_event(_chat(t, usage=None, obfuscation="p" * n)) for n, t in enumerate(["a", "b", "c", "d", "e"])]
    events.append(b"data: [DONE]\n\n")
    out, seen, tee = _observed(events, True, "chat/completions", templates=True)
    assert (out, seen) == _observed(events, True, "chat/completions", templates=False)[:2]
    assert tee._tries == 0 and seen[0] == ["a", "b", "c", "d", "e"]


def test_a_template_is_kept_only_when_its_text_is_the_chunk_text():
    # The key spelled with an escape, and a look-alike "content" nested beside it: the bytes
    # that vary are not the chunk's text, so no template may be made from them.
    def event(decoy: str) -> bytes:
        return (b'data: {"id":"c","model":"m","choices":[{"index":0,"delta":{"\\u0063ontent":"same",'
                b'"extra":{"content":"' + decoy.encode() + b'"}},"finish_reason":null}]}\n\n')

    events = [event(d) for d in ("one", "two", "three")] + [b"data: [DONE]\n\n"]
    out, seen, tee = _observed(events, False, "chat/completions", templates=True)
    assert (out, seen) == _observed(events, False, "chat/completions", templates=False)[:2]
    assert seen[0] == ["same", "same", "same"] and tee._template is None


@pytest.mark.parametrize("cut, need_usage, complete", [
    (-1, True, True),     # finish reason and usage, no [DONE]: whole
    (-2, False, True),    # finish reason, no usage, and the client did not ask for it: whole
    (-2, True, False),    # ... but it did: cut before the end
    (-3, False, False),   # no finish reason: cut
])
def test_a_stream_ending_cleanly_is_done_once_every_choice_finished(cut, need_usage, complete):
    events = _events()[:cut]
    whole = b"".join(events)
    for name, reads in _shapes(whole, events).items():
        ctx = RequestContext(request_id="r", endpoint="chat/completions", t_start=0.0, ts_start=0.0)
        ctx.client_wants_usage = need_usage
        tee = StreamTee(ctx, True)
        for data in reads:
            tee.feed(data, 0.0)
        assert not tee.done, name  # not before the stream ended
        tee.tail()
        assert (tee.done, ctx.stream_done) == (complete, complete), name


def test_a_stream_with_an_unfinished_choice_is_not_done():
    both = {**chat_chunk(), "choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None},
                                        {"index": 1, "delta": {"content": "b"}, "finish_reason": None}]}
    reads = [sse_event(both) + sse_event(chat_chunk(finish="stop")),
             sse_event({**chat_chunk(), "choices": [{"index": 1, "delta": {}, "finish_reason": "length"}]})]
    for upto, complete in ((1, False), (2, True)):
        tee = StreamTee(RequestContext(request_id="r", endpoint="chat/completions", t_start=0.0, ts_start=0.0),
                        False)
        for data in reads[:upto]:
            tee.feed(data, 0.0)
        tee.tail()
        assert tee.done is complete
