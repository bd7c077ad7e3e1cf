"""Single flight: identical concurrent requests share one upstream call (JSON and streams),
leader failures, and clients that leave."""

from __future__ import annotations

import asyncio
import collections

import httpx
import orjson
import pytest

from tests.test_cache import CHAT, DET, _strip_usage, cache_config, stream_events, until_stored

# Fixtures shared with test_cache.py (pytest finds them through this import).
from tests.test_cache import _redis_cleanup, redis_namespace, start_gateway, store_yaml  # noqa: F401


def run(coro):
    return asyncio.run(coro)


async def _post(client: httpx.AsyncClient, url: str, body: dict, delay: float = 0.0, **kw):
    if delay:
        await asyncio.sleep(delay)
    return await client.post(url, json=body, **kw)


async def _stream(client: httpx.AsyncClient, url: str, body: dict, delay: float = 0.0):
    if delay:
        await asyncio.sleep(delay)
    async with client.stream("POST", url, json={**body, "stream": True}) as r:
        return r.status_code, r.headers.get("x-gateway-cache"), b"".join([b async for b in r.aiter_bytes()])


def test_100_identical_concurrent_requests_make_one_upstream_call(start_gateway, upstream, store_yaml):
    gw = start_gateway(cache_config(upstream.url, f"enabled: true\n{store_yaml}"))
    upstream.json(CHAT, delay_s=0.5)

    async def burst():
        client = gw.async_sdk()
        try:
            return await asyncio.gather(*[client.chat.completions.with_raw_response.create(**DET)
                                          for _ in range(100)])
        finally:
            await client.close()

    results = run(burst())
    assert len(upstream.received) == 1
    statuses = collections.Counter(r.headers["x-gateway-cache"] for r in results)
    assert statuses["miss"] == 1 and statuses["miss"] + statuses["coalesced"] + statuses["hit"] == 100
    assert statuses["coalesced"] >= 90
    assert all(r.http_response.content == orjson.dumps(CHAT) for r in results)
    assert all(r.parse().choices[0].message.content == "Cached words" for r in results)
    records = gw.wait_records(100)
    assert collections.Counter(r.cache_status for r in records) == statuses
    follower = next(r for r in records if r.cache_status == "coalesced")
    assert follower.status_code == 200 and follower.usage.total_tokens is None and follower.t_upstream_start is None
    until_stored(gw)
    assert gw.post(DET).headers["x-gateway-cache"] == "hit"


def test_concurrent_streams_share_one_upstream_stream(start_gateway, upstream):
    gw = start_gateway(cache_config(upstream.url, "enabled: true"))
    events = stream_events()
    upstream.sse(events, chunk_delay_s=0.05)
    url = f"{gw.url}/v1/chat/completions"
    with_usage = {**DET, "stream_options": {"include_usage": True}}

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(_stream(client, url, DET), *[
                _stream(client, url, with_usage if i % 2 else DET, delay=0.05 + i * 0.01) for i in range(20)])

    (status, cache, body), *followers = run(burst())
    assert len(upstream.received) == 1
    assert (status, cache) == (200, "miss") and body == _strip_usage(events)
    for i, (status, cache, got) in enumerate(followers):
        assert (status, cache) == (200, "coalesced")
        if i % 2:  # asked for usage: the usage chunk is added before [DONE]
            assert got == _strip_usage(events).replace(b"data: [DONE]", events[-2] + b"data: [DONE]")
        else:
            assert got == body


def test_followers_receive_chunks_as_the_leader_does(start_gateway, upstream):
    gw = start_gateway(cache_config(upstream.url, "enabled: true"))
    events = stream_events()
    upstream.sse(events, chunk_delay_s=0.1)
    url = f"{gw.url}/v1/chat/completions"

    async def first_chunk_time(client, delay):
        await asyncio.sleep(delay)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        first = None
        async with client.stream("POST", url, json={**DET, "stream": True}) as r:
            async for _ in r.aiter_bytes():
                first = first or loop.time() - t0
        return r.headers["x-gateway-cache"], first

    async def both():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(first_chunk_time(client, 0), first_chunk_time(client, 0.05))

    (lead, _), (follow, ttfb) = run(both())
    assert (lead, follow) == ("miss", "coalesced")
    assert ttfb < 0.5  # the whole stream takes > 1 s: the follower did not wait for its end


def test_mixed_stream_and_json_requests_coalesce(start_gateway, upstream):
    gw = start_gateway(cache_config(upstream.url, "enabled: true"))
    upstream.sse(stream_events(), chunk_delay_s=0.03)
    url = f"{gw.url}/v1/chat/completions"

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            leader = asyncio.ensure_future(_stream(client, url, DET))
            followers = await asyncio.gather(*[_post(client, url, DET, delay=0.05) for _ in range(5)])
            return await leader, followers

    (_, cache, _), followers = run(burst())
    assert cache == "miss" and len(upstream.received) == 1
    for r in followers:
        assert r.headers["x-gateway-cache"] == "coalesced"
        message = r.json()["choices"][0]["message"]
        assert message["content"] == "The answer is 42 é"
        assert message["tool_calls"][0]["function"]["arguments"] == '{"q":"x"}'


def test_json_leader_serves_stream_followers(start_gateway, upstream):
    gw = start_gateway(cache_config(upstream.url, "enabled: true"))
    upstream.json(CHAT, delay_s=0.3)
    url = f"{gw.url}/v1/chat/completions"

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            leader = asyncio.ensure_future(_post(client, url, DET))
            followers = await asyncio.gather(*[_stream(client, url, DET, delay=0.05) for _ in range(3)])
            return await leader, followers

    leader, followers = run(burst())
    assert leader.headers["x-gateway-cache"] == "miss" and len(upstream.received) == 1
    for status, cache, body in followers:
        assert (status, cache) == (200, "coalesced")
        assert b'"content":"Cached words"' in body and body.endswith(b"data: [DONE]\n\n")


def test_leader_error_answer_is_shared(start_gateway, upstream):
    gw = start_gateway(cache_config(upstream.url, "enabled: true"))
    bad = {"error": {"message": "bad parameter", "type": "invalid_request_error", "param": "x", "code": None}}
    upstream.json(bad, status=400, delay_s=0.3)
    url = f"{gw.url}/v1/chat/completions"

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*[_post(client, url, DET, delay=0.02 * bool(i)) for i in range(10)])

    results = run(burst())
    assert len(upstream.received) == 1
    assert all(r.status_code == 400 and r.json() == bad for r in results)
    assert sorted(r.headers["x-gateway-cache"] for r in results) == ["coalesced"] * 9 + ["miss"]
    assert gw.post(DET).status_code == 400 and len(upstream.received) == 2  # errors are not stored


def test_leader_gateway_error_is_shared(start_gateway, upstream):
    yaml = cache_config(upstream.url, "enabled: true", extra="routing: {retry: {attempts: 1}}").replace(
        "api_key: sk-backend}", "api_key: sk-backend, timeouts: {first_byte: 0.3}}")
    gw = start_gateway(yaml)
    upstream.hang()
    url = f"{gw.url}/v1/chat/completions"

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*[_post(client, url, DET, delay=0.02 * bool(i)) for i in range(5)])

    results = run(burst())
    assert len(upstream.received) == 1
    assert [r.status_code for r in results] == [504] * 5
    assert all(r.json()["error"]["code"] == "upstream_timeout" for r in results)
    assert sorted(r.headers["x-gateway-cache"] for r in results) == ["coalesced"] * 4 + ["miss"]


def test_followers_retry_once_when_the_leader_leaves(start_gateway, upstream):
    gw = start_gateway(cache_config(upstream.url, "enabled: true"))
    upstream.json(CHAT, delay_s=0.4)
    url = f"{gw.url}/v1/chat/completions"

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            async def impatient():
                try:
                    await _post(client, url, DET, timeout=0.15)
                except httpx.TimeoutException:
                    return "left"

            leader = asyncio.ensure_future(impatient())
            followers = await asyncio.gather(*[_post(client, url, DET, delay=0.05) for _ in range(8)])
            return await leader, followers

    leader, followers = run(burst())
    assert leader == "left"
    assert all(r.status_code == 200 and r.json() == CHAT for r in followers)
    # the leader's call was cancelled; one follower led the retry, the others followed it
    assert len(upstream.received) == 2
    assert sorted(r.headers["x-gateway-cache"] for r in followers) == ["coalesced"] * 7 + ["miss"]


def test_a_follower_that_leaves_does_not_affect_the_leader(start_gateway, upstream):
    gw = start_gateway(cache_config(upstream.url, "enabled: true"))
    events = stream_events()
    upstream.sse(events, chunk_delay_s=0.05)
    url = f"{gw.url}/v1/chat/completions"

    async def scenario():
        async with httpx.AsyncClient(timeout=30) as client:
            leader = asyncio.ensure_future(_stream(client, url, DET))
            impatient_json = asyncio.ensure_future(_post(client, url, DET, delay=0.05, timeout=0.1))
            await asyncio.sleep(0.05)
            async with client.stream("POST", url, json={**DET, "stream": True}) as r:  # a stream follower
                async for _ in r.aiter_bytes():
                    break  # … that leaves after its first bytes
            with pytest.raises(httpx.TimeoutException):
                await impatient_json
            other = await _stream(client, url, DET, delay=0.05)
            return await leader, other

    (status, cache, body), other = run(scenario())
    assert (status, cache) == (200, "miss") and body == _strip_usage(events)
    assert other == (200, "coalesced", body)
    assert len(upstream.received) == 1
    until_stored(gw)
    r, replay = gw.stream(DET)
    assert r.headers["x-gateway-cache"] == "hit" and replay == body


def test_stream_followers_get_an_error_when_the_leader_leaves_mid_stream(start_gateway, upstream):
    gw = start_gateway(cache_config(upstream.url, "enabled: true"))
    upstream.sse(stream_events(), chunk_delay_s=0.1)
    url = f"{gw.url}/v1/chat/completions"

    async def scenario():
        async with httpx.AsyncClient(timeout=30) as client:
            async def leader():
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                async with client.stream("POST", url, json={**DET, "stream": True}) as r:
                    async for _ in r.aiter_bytes():
                        if loop.time() - t0 > 0.3:
                            break  # leaves mid-stream

            lead = asyncio.ensure_future(leader())
            follower = await _stream(client, url, DET, delay=0.05)
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


def test_coalescing_can_be_turned_off(start_gateway, upstream):
    gw = start_gateway(cache_config(upstream.url, "enabled: true\ncoalesce: false"))
    upstream.json(CHAT, delay_s=0.2)
    url = f"{gw.url}/v1/chat/completions"

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*[_post(client, url, DET) for _ in range(5)])

    results = run(burst())
    assert len(upstream.received) == 5 and all(r.headers["x-gateway-cache"] == "miss" for r in results)
