"""Single flight: identical concurrent requests share one upstream call (JSON and streams),
leader failures, and clients that leave."""

from __future__ import annotations

import asyncio
import collections

import httpx
import orjson
import pytest

# Fixtures shared by the cache tests (pytest finds them through this import).
from tests.support.cache import (  # noqa: F401
    CHAT,
    DET,
    _redis_cleanup,
    _strip_usage,
    cache_config,
    cache_gateway,
    redis_namespace,
    store_yaml,
    stream_events,
    until_stored,
)
from tests.support.polling import async_wait_for


def run(coro):
    return asyncio.run(coro)


def live_followers(gw) -> int:
    """Followers now waiting on an in-flight leader (read from the gateway's cache stage).

    The tests hold the upstream (``hold()`` / ``sse(pause_after=N)``) until the followers they
    start have joined, so that what coalesces does not depend on how fast the machine is."""
    return sum(1 for flight in list(gw.cache.flights.values()) for fut in list(flight._waiters) if not fut.done())


def leader_pieces(gw) -> int:
    """Byte pieces the in-flight leaders have relayed so far."""
    return sum(len(flight.pieces) for flight in list(gw.cache.flights.values()))


async def _post(client: httpx.AsyncClient, url: str, body: dict, **kw):
    return await client.post(url, json=body, **kw)


async def _stream(client: httpx.AsyncClient, url: str, body: dict):
    async with client.stream("POST", url, json={**body, "stream": True}) as r:
        return r.status_code, r.headers.get("x-gateway-cache"), b"".join([b async for b in r.aiter_bytes()])


def test_100_identical_concurrent_requests_make_one_upstream_call(cache_gateway, upstream, store_yaml):
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
    upstream.json(CHAT)
    upstream.hold()

    async def burst():
        client = gw.async_sdk()
        try:
            calls = [asyncio.ensure_future(client.chat.completions.with_raw_response.create(**DET))
                     for _ in range(100)]
            await async_wait_for(lambda: live_followers(gw) == 99, what="99 followers")
            upstream.release()
            return await asyncio.gather(*calls)
        finally:
            await client.close()

    results = run(burst())
    assert len(upstream.received) == 1
    statuses = collections.Counter(r.headers["x-gateway-cache"] for r in results)
    assert statuses == {"miss": 1, "coalesced": 99}
    assert all(r.http_response.content == orjson.dumps(CHAT) for r in results)
    assert all(r.parse().choices[0].message.content == "Cached words" for r in results)
    records = gw.wait_records(100)
    assert collections.Counter(r.cache_status for r in records) == statuses
    follower = next(r for r in records if r.cache_status == "coalesced")
    assert follower.status_code == 200 and follower.usage.total_tokens is None and follower.t_upstream_start is None
    until_stored(gw)
    assert gw.post(DET).headers["x-gateway-cache"] == "hit"


def test_concurrent_streams_share_one_upstream_stream(cache_gateway, upstream):
    gw = cache_gateway(cache_config(upstream.url, "enabled: true"))
    events = stream_events()
    upstream.sse(events, pause_after=3)  # followers join a stream already under way
    url = f"{gw.url}/v1/chat/completions"
    with_usage = {**DET, "stream_options": {"include_usage": True}}

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            leader = asyncio.ensure_future(_stream(client, url, DET))
            await async_wait_for(lambda: leader_pieces(gw) > 0, what="the leader's first bytes")
            followers = [asyncio.ensure_future(_stream(client, url, with_usage if i % 2 else DET))
                         for i in range(20)]
            await async_wait_for(lambda: live_followers(gw) == 20, what="20 followers")
            upstream.resume()
            return await asyncio.gather(leader, *followers)

    (status, cache, body), *followers = run(burst())
    assert len(upstream.received) == 1
    assert (status, cache) == (200, "miss") and body == _strip_usage(events)
    for i, (status, cache, got) in enumerate(followers):
        assert (status, cache) == (200, "coalesced")
        if i % 2:  # asked for usage: the usage chunk is added before [DONE]
            assert got == _strip_usage(events).replace(b"data: [DONE]", events[-2] + b"data: [DONE]")
        else:
            assert got == body


def test_followers_receive_chunks_as_the_leader_does(cache_gateway, upstream):
    gw = cache_gateway(cache_config(upstream.url, "enabled: true"))
    upstream.sse(stream_events(), pause_after=3)
    url = f"{gw.url}/v1/chat/completions"

    async def both():
        async with httpx.AsyncClient(timeout=30) as client:
            leader = asyncio.ensure_future(_stream(client, url, DET))
            await async_wait_for(lambda: leader_pieces(gw) > 0, what="the leader's first bytes")
            async with client.stream("POST", url, json={**DET, "stream": True}) as r:
                chunks = r.aiter_bytes()
                # The upstream is paused mid-stream: these bytes can only be the leader's so far.
                first = await asyncio.wait_for(chunks.__anext__(), 20)
                upstream.resume()
                rest = b"".join([b async for b in chunks])
                follow = r.headers["x-gateway-cache"]
            return (await leader)[1], follow, first + rest

    lead, follow, body = run(both())
    assert (lead, follow) == ("miss", "coalesced")
    assert body.endswith(b"data: [DONE]\n\n")


def test_mixed_stream_and_json_requests_coalesce(cache_gateway, upstream):
    gw = cache_gateway(cache_config(upstream.url, "enabled: true"))
    upstream.sse(stream_events(), pause_after=2)
    url = f"{gw.url}/v1/chat/completions"

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            leader = asyncio.ensure_future(_stream(client, url, DET))
            await async_wait_for(lambda: leader_pieces(gw) > 0, what="the leader's first bytes")
            followers = [asyncio.ensure_future(_post(client, url, DET)) for _ in range(5)]
            await async_wait_for(lambda: live_followers(gw) == 5, what="5 followers")
            upstream.resume()
            return await leader, await asyncio.gather(*followers)

    (_, cache, _), followers = run(burst())
    assert cache == "miss" and len(upstream.received) == 1
    for r in followers:
        assert r.headers["x-gateway-cache"] == "coalesced"
        message = r.json()["choices"][0]["message"]
        assert message["content"] == "The answer is 42 é"
        assert message["tool_calls"][0]["function"]["arguments"] == '{"q":"x"}'


def test_json_leader_serves_stream_followers(cache_gateway, upstream):
    gw = cache_gateway(cache_config(upstream.url, "enabled: true"))
    upstream.json(CHAT)
    upstream.hold()
    url = f"{gw.url}/v1/chat/completions"

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            leader = asyncio.ensure_future(_post(client, url, DET))
            await async_wait_for(lambda: upstream.received, what="the leader upstream")
            followers = [asyncio.ensure_future(_stream(client, url, DET)) for _ in range(3)]
            await async_wait_for(lambda: live_followers(gw) == 3, what="3 followers")
            upstream.release()
            return await leader, await asyncio.gather(*followers)

    leader, followers = run(burst())
    assert leader.headers["x-gateway-cache"] == "miss" and len(upstream.received) == 1
    for status, cache, body in followers:
        assert (status, cache) == (200, "coalesced")
        assert b'"content":"Cached words"' in body and body.endswith(b"data: [DONE]\n\n")


def test_leader_error_answer_is_shared(cache_gateway, upstream):
    gw = cache_gateway(cache_config(upstream.url, "enabled: true"))
    bad = {"error": {"message": "bad parameter", "type": "invalid_request_error", "param": "x", "code": None}}
    upstream.json(bad, status=400)
    upstream.hold()
    url = f"{gw.url}/v1/chat/completions"

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            calls = [asyncio.ensure_future(_post(client, url, DET)) for _ in range(10)]
            await async_wait_for(lambda: live_followers(gw) == 9, what="9 followers")
            upstream.release()
            return await asyncio.gather(*calls)

    results = run(burst())
    assert len(upstream.received) == 1
    assert all(r.status_code == 400 and r.json() == bad for r in results)
    assert sorted(r.headers["x-gateway-cache"] for r in results) == ["coalesced"] * 9 + ["miss"]
    assert gw.post(DET).status_code == 400 and len(upstream.received) == 2  # errors are not stored


def test_leader_gateway_error_is_shared(cache_gateway, upstream):
    # The followers join within milliseconds; the first-byte timeout only has to outlast that.
    yaml = cache_config(upstream.url, "enabled: true", extra="routing: {retry: {attempts: 1}}").replace(
        "api_key: sk-backend}", "api_key: sk-backend, timeouts: {first_byte: 2}}")
    gw = cache_gateway(yaml)
    upstream.hang()
    url = f"{gw.url}/v1/chat/completions"

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            leader = asyncio.ensure_future(_post(client, url, DET))
            await async_wait_for(lambda: upstream.received, what="the leader upstream")
            followers = [asyncio.ensure_future(_post(client, url, DET)) for _ in range(4)]
            return await asyncio.gather(leader, *followers)

    results = run(burst())
    assert len(upstream.received) == 1
    assert [r.status_code for r in results] == [504] * 5
    assert all(r.json()["error"]["code"] == "upstream_timeout" for r in results)
    assert sorted(r.headers["x-gateway-cache"] for r in results) == ["coalesced"] * 4 + ["miss"]


def test_followers_retry_once_when_the_leader_leaves(cache_gateway, upstream):
    gw = cache_gateway(cache_config(upstream.url, "enabled: true"))
    upstream.json(CHAT)
    upstream.hold()
    url = f"{gw.url}/v1/chat/completions"

    async def burst():
        async with httpx.AsyncClient(timeout=30) as impatient_client, httpx.AsyncClient(timeout=30) as client:
            leader = asyncio.ensure_future(_post(impatient_client, url, DET))
            await async_wait_for(lambda: upstream.received, what="the leader upstream")
            followers = [asyncio.ensure_future(_post(client, url, DET)) for _ in range(8)]
            await async_wait_for(lambda: live_followers(gw) == 8, what="8 followers")
            leader.cancel()  # the leader's client hangs up
            await impatient_client.aclose()
            # one follower leads the retry (held upstream too), the others follow it
            await async_wait_for(lambda: len(upstream.received) == 2 and live_followers(gw) == 7,
                                 what="the retry and its 7 followers")
            upstream.release()
            return await asyncio.gather(*followers)

    followers = run(burst())
    assert all(r.status_code == 200 and r.json() == CHAT for r in followers)
    # the leader's call was cancelled; one follower led the retry, the others followed it
    assert len(upstream.received) == 2
    assert sorted(r.headers["x-gateway-cache"] for r in followers) == ["coalesced"] * 7 + ["miss"]


def test_a_follower_that_leaves_does_not_affect_the_leader(cache_gateway, upstream):
    gw = cache_gateway(cache_config(upstream.url, "enabled: true"))
    events = stream_events()
    upstream.sse(events, pause_after=2)
    url = f"{gw.url}/v1/chat/completions"

    async def scenario():
        async with httpx.AsyncClient(timeout=30) as client:
            leader = asyncio.ensure_future(_stream(client, url, DET))
            await async_wait_for(lambda: leader_pieces(gw) > 0, what="the leader's first bytes")
            with pytest.raises(httpx.TimeoutException):  # a JSON follower whose client gives up
                await _post(client, url, DET, timeout=0.3)
            async with client.stream("POST", url, json={**DET, "stream": True}) as r:  # a stream follower
                async for _ in r.aiter_bytes():
                    break  # … that leaves after its first bytes
            await async_wait_for(lambda: live_followers(gw) == 0, what="both followers to be gone")
            other = asyncio.ensure_future(_stream(client, url, DET))
            await async_wait_for(lambda: live_followers(gw) == 1, what="a third follower")
            upstream.resume()
            return await leader, await other

    (status, cache, body), other = run(scenario())
    assert (status, cache) == (200, "miss") and body == _strip_usage(events)
    assert other == (200, "coalesced", body)
    assert len(upstream.received) == 1
    until_stored(gw)
    r, replay = gw.stream(DET)
    assert r.headers["x-gateway-cache"] == "hit" and replay == body


def test_stream_followers_get_an_error_when_the_leader_leaves_mid_stream(cache_gateway, upstream):
    gw = cache_gateway(cache_config(upstream.url, "enabled: true"))
    upstream.sse(stream_events(), pause_after=3)
    url = f"{gw.url}/v1/chat/completions"

    async def scenario():
        async with httpx.AsyncClient(timeout=30) as client:
            async def leader():
                async with client.stream("POST", url, json={**DET, "stream": True}) as r:
                    async for _ in r.aiter_bytes():
                        await async_wait_for(lambda: live_followers(gw) == 1, what="the follower")
                        break  # leaves mid-stream, once the follower has joined

            lead = asyncio.ensure_future(leader())
            await async_wait_for(lambda: leader_pieces(gw) > 0, what="the leader's first bytes")
            follower = await _stream(client, url, DET)
            await lead
            return follower

    status, cache, body = run(scenario())
    assert (status, cache) == (200, "coalesced")
    assert b'"content":"The answer "' in body or b"reasoning_content" in body
    assert b"stream_truncated" in body and b"[DONE]" not in body
    assert len(upstream.received) == 1
    until_stored(gw)
    upstream.sse(stream_events())
    r, _ = gw.stream(DET)
    assert r.headers["x-gateway-cache"] == "miss"  # the cut stream was not stored


def test_coalescing_can_be_turned_off(cache_gateway, upstream):
    gw = cache_gateway(cache_config(upstream.url, "enabled: true\ncoalesce: false"))
    upstream.json(CHAT)
    upstream.hold()
    url = f"{gw.url}/v1/chat/completions"

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            calls = [asyncio.ensure_future(_post(client, url, DET)) for _ in range(5)]
            await async_wait_for(lambda: len(upstream.received) == 5, what="5 concurrent upstream calls")
            upstream.release()
            return await asyncio.gather(*calls)

    results = run(burst())
    assert len(upstream.received) == 5 and all(r.headers["x-gateway-cache"] == "miss" for r in results)
