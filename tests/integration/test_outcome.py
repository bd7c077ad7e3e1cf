"""The request's outcome is concluded once (``gateway.core.outcome``) and every reader takes it as
it stands: a request nobody answered is a client that left, a failed write is certain, a
stream that relayed ``[DONE]`` is complete, and limits bill exactly the requests the row bills."""

from __future__ import annotations

import httpx
import pytest

from gateway.core import outcome
from gateway.core.context import RequestContext
from gateway.core.errors import UpstreamTimeoutError
from tests.support.access import KEY_A, MSG, access_config
from tests.support.fake_upstream import chat_chunk, sse_event
from tests.support.polling import wait_for


def ctx(**kw) -> RequestContext:
    c = RequestContext(request_id="r", endpoint="chat/completions", t_start=0.0, ts_start=0.0)
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def test_conclude_settles_what_is_still_open():
    unanswered = ctx()
    outcome.conclude(unanswered)
    assert (unanswered.status_code, unanswered.error_type, unanswered.truncated) == (499, "client_closed", False)
    no_body = ctx(status_code=200, t_upstream_start=1.0)  # JSON headers came, the body never did
    outcome.conclude(no_body)
    assert outcome.is_client_closed(no_body)
    done = ctx(status_code=200, t_upstream_start=1.0, t_first_token=2.0)
    outcome.conclude(done)
    assert outcome.complete(done)
    failed = ctx()
    outcome.failed(failed, UpstreamTimeoutError("slow"))
    outcome.conclude(failed)
    assert (failed.status_code, failed.error_type, failed.error_message) == (504, "upstream_timeout", "slow")


def test_client_closed_keeps_a_recorded_error_and_a_completed_stream():
    relayed = ctx(stream=True, status_code=200, stream_done=True)
    outcome.client_closed(relayed)  # cancelled after [DONE]: the SDK simply hung up
    assert outcome.complete(relayed)
    outcome.client_closed(relayed, write_failed=True)  # a write that failed is certain
    assert (relayed.status_code, relayed.truncated) == (499, True)
    errored = ctx(stream=True)
    outcome.error(errored, 502, "upstream_stream_error", "boom")
    outcome.client_closed(errored)
    assert errored.error_type == "upstream_stream_error"


@pytest.mark.parametrize("fields, billed", [
    ({}, False),  # never reached a model
    ({"t_upstream_start": 1.0, "status_code": 200}, True),
    ({"t_upstream_start": 1.0, "status_code": 400}, False),  # the model refused it
    ({"t_upstream_start": 1.0, "status_code": 502, "truncated": True}, True),  # cut off mid-stream
    ({"t_upstream_start": 1.0, "status_code": 499, "truncated": True}, True),  # the client left
    ({"t_upstream_start": 1.0}, True),  # still open: the client left before the answer
])
def test_model_worked(fields, billed):
    assert outcome.model_worked(ctx(**fields)) is billed


def test_a_stream_cut_off_before_any_text_is_billed_as_its_row_bills_it(upstream, make_gateway):
    extra = "pricing:\n  models:\n    up-model: {input: 1000.0, output: 1000.0}\n"
    gw = make_gateway(access_config(upstream.url, key_a="tpm: 5000, budget_usd: {day: 100.0}", extra=extra))
    upstream.sse([sse_event(chat_chunk(role=True)), sse_event(chat_chunk("never sent"))], abort_after=1)
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "gpt-test", "messages": MSG, "stream": True},
                   headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
    assert r.status_code == 200 and b'"error"' in r.content  # told in-band: the answer is incomplete

    def usage() -> dict:
        return httpx.get(f"{gw.url}/admin/access").json()["keys"][0]["usage"]

    # The model read the prompt (the row logs an estimate of it): the key pays for it too. The
    # key is settled once the stream has ended, which may be just after the client read its end.
    # (The day's spend, unlike the token bucket, does not refill while we look.)
    wait_for(lambda: usage()["spent_usd_day"] > 0, timeout=5, what="the key to pay for the prompt")
