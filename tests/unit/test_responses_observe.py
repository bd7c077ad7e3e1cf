"""Observing a native Responses stream: the same bytes out and the same observations whatever
the read shapes; a stream's end, failure and truncation told apart."""

from __future__ import annotations

import random

from gateway.core.context import RequestContext, Usage
from gateway.core.errors import StreamTruncatedError
from gateway.inbound.responses.observe import ResponsesTee, finish_reason
from tests.support.responses import response_events, response_object


def _run(reads: list[bytes]) -> tuple[bytes, RequestContext, ResponsesTee]:
    ctx = RequestContext(request_id="r", endpoint="responses", t_start=0.0, ts_start=0.0)
    tee = ResponsesTee(ctx)
    out = b"".join(tee.feed(data, float(i)) for i, data in enumerate(reads)) + tee.tail()
    return out, ctx, tee


def test_any_read_shape_relays_the_same_bytes_and_sees_the_same():
    events = response_events(["Hel", "lo", " 世界"])
    whole = b"".join(events)
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, len(whole)), 40))
    shapes = [events, [whole], [whole[i:j] for i, j in zip([0, *cuts], [*cuts, len(whole)], strict=True)]]
    for reads in shapes:
        out, ctx, tee = _run(reads)
        assert out == whole and tee.done and tee.upstream_error is None
        assert "".join(ctx.completion_text) == "Hel" + "lo" + " 世界" and len(ctx.chunk_times) == 3
        assert ctx.usage == Usage(20, 12, 32, 8, 5, 0) and ctx.finish_reason == "stop"
        assert ctx.model_served == "gpt-4o-2024-08-06" and ctx.response_id == "resp_abc"


def test_a_cut_stream_is_not_done_and_its_error_event_follows_the_last_number():
    out, ctx, tee = _run(response_events(["a", "b"])[:5])
    assert not tee.done and ctx.usage == Usage() and ctx.finish_reason == ""
    event = tee.error_event(StreamTruncatedError("cut"))
    assert event.startswith(b"event: error\ndata: ") and b'"sequence_number":5' in event
    assert b'"code":"stream_truncated"' in event


def test_finish_reasons_in_the_rows_vocabulary():
    done = response_object("x")
    assert finish_reason(done) == "stop"
    assert finish_reason({**done, "output": [{"type": "function_call"}]}) == "tool_calls"
    cut = {**done, "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    assert finish_reason(cut) == "length"
    assert finish_reason({**done, "status": "failed"}) == "failed"
    assert finish_reason({**done, "status": "in_progress"}) == ""
