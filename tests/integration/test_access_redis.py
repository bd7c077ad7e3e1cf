"""Limits shared through a real Redis: two gateway apps in this process plus one ``llm-gateway
serve`` subprocess enforce one limit; fail-open (and fail-closed) when Redis stops.

Each test starts its own ``redis-server`` on a free port and kills it at the end.
"""

from __future__ import annotations

import asyncio
import logging
import shutil

import httpx
import pytest
import redis as redis_sync

from gateway.access.limits import LimitSpec, RedisLimits
from gateway.config.access import LimitSettings
from gateway.proxy.server import free_port
from tests.support.access import CHAT, KEY_A, KEY_B, MSG, access_config, post
from tests.support.polling import async_wait_for, wait_for
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


def shared_config(upstream_url: str, redis_url: str, key_a: str, extra_limits: str = "", extra: str = "") -> str:
    return access_config(upstream_url, key_a=key_a, extra=f"""
limits:
  redis_url: {redis_url}
  redis_timeout_ms: 200
  redis_retry_s: 0.3
{extra_limits}
{extra}""")


def remaining(r: httpx.Response) -> int:
    return int(r.headers["x-ratelimit-remaining-requests"])


def usage(gw) -> dict:
    """The first key's usage as ``GET /admin/access`` reports it."""
    return httpx.get(f"{gw.url}/admin/access").json()["keys"][0]["usage"]


def test_rpm_tpm_and_budget_are_shared_by_two_instances(upstream, make_gateway, redis_server):
    extra = "pricing:\n  models:\n    up-model: {input: 100000.0, output: 100000.0}\n"  # 7 tokens = $0.70
    config = shared_config(upstream.url, redis_server.url, "rpm: 5, tpm: 100000, budget_usd: {day: 1.5}",
                           extra=extra)
    gw1, gw2 = make_gateway(config), make_gateway(config)
    upstream.json(CHAT)
    seen = [remaining(post(gw1)), remaining(post(gw2))]
    assert seen == [4, 3]  # one bucket: the second instance sees the first one's request
    # the spend of both ($1.40) is one budget; the next request on either crosses it ...
    assert post(gw1).status_code == 200  # $2.10 after this one
    # settlements are written in the background
    wait_for(lambda: usage(gw2)["spent_usd_day"] == pytest.approx(2.1), what="the spend to be settled")
    r = post(gw2)
    assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded"
    r = post(gw1)
    assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded"
    assert "$2.10 of $1.50 spent" in r.json()["error"]["message"]
    keys = redis_sync.Redis(port=redis_server.port).keys("*")
    assert keys and all(k.startswith(b"llmgw:{team-a-main}:") for k in keys)
    info = httpx.get(f"{gw2.url}/admin/access").json()
    assert info["limits"]["store"] == "redis" and info["keys"][0]["usage"]["spent_usd_day"] == pytest.approx(2.1)
    # another key is unaffected, its counters apart
    assert post(gw2, key=KEY_B).status_code == 200


def test_rpm_shared_with_a_gateway_subprocess(upstream, make_gateway, redis_server, tmp_path):
    from tests.support.telemetry import spawn_gateway

    config = shared_config(upstream.url, redis_server.url, "rpm: 6")
    path = tmp_path / "gateway.yaml"
    path.write_text(config)
    port = free_port()
    proc = spawn_gateway(path, port, tmp_path / "gw.log", LLM_GATEWAY_TELEMETRY="off")
    try:
        gw = make_gateway(config)
        upstream.json(CHAT)

        class Remote:
            url = f"http://127.0.0.1:{port}"

        codes = [post(g).status_code for g in (gw, Remote, gw, Remote, gw, Remote)]
        assert codes == [200] * 6
        assert post(Remote).status_code == 429 and post(gw).status_code == 429
        r = post(Remote)
        assert r.headers["x-ratelimit-remaining-requests"] == "0" and int(r.headers["retry-after"]) >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_denied_endpoints_take_nothing_from_shared_limits(upstream, make_gateway, redis_server):
    """A path outside the key's endpoints is refused before admission: two instances sharing an
    rpm of 2 through Redis still serve two chat requests after a run of refused ones."""
    config = shared_config(upstream.url, redis_server.url, "rpm: 2")
    gw1, gw2 = make_gateway(config), make_gateway(config)
    upstream.json(CHAT)
    for gw in (gw1, gw2, gw1, gw2):
        r = httpx.post(f"{gw.url}/v1/fine_tuning/jobs", json={"model": "gpt-test", "training_file": "file-1"},
                       headers={"Authorization": f"Bearer {KEY_A}"}, timeout=30)
        assert r.status_code == 403 and r.json()["error"]["code"] == "endpoint_not_allowed"
    assert not upstream.received
    assert post(gw1).status_code == 200 and post(gw2).status_code == 200
    r = post(gw1)
    assert r.status_code == 429 and r.headers["x-ratelimit-remaining-requests"] == "0"
    assert [x.path for x in upstream.received] == ["/v1/chat/completions"] * 2


def test_concurrency_and_tpm_correction_through_redis(upstream, make_gateway, redis_server):
    config = shared_config(upstream.url, redis_server.url, "max_concurrent: 1, tpm: 3000")
    gw1, gw2 = make_gateway(config), make_gateway(config)
    upstream.json(CHAT)
    upstream.hold()  # the first request keeps its slot until the second has been refused

    async def both():
        async with httpx.AsyncClient(timeout=30) as c:
            body = {"model": "gpt-test", "messages": MSG, "max_tokens": 1000}
            h = {"Authorization": f"Bearer {KEY_A}"}
            first = asyncio.create_task(c.post(f"{gw1.url}/v1/chat/completions", json=body, headers=h))
            await async_wait_for(lambda: upstream.received, what="the first request upstream")
            second = await c.post(f"{gw2.url}/v1/chat/completions", json=body, headers=h)
            upstream.release()
            return await first, second

    first, second = asyncio.run(both())
    assert first.status_code == 200
    assert second.status_code == 429 and second.json()["error"]["code"] == "concurrency_limit_exceeded"
    # settled in the background: the slot freed and the reservation replaced by the real tokens
    wait_for(lambda: usage(gw2)["in_flight"] == 0 and usage(gw2)["tokens_remaining"] > 2900,
             what="the first request to be settled")
    # the 1000-token reservation was replaced by the 7 real tokens, and the slot freed
    r = post(gw2, body={"model": "gpt-test", "messages": MSG, "max_tokens": 1000})
    assert r.status_code == 200 and 3000 - int(r.headers["x-ratelimit-remaining-tokens"]) < 1100


def test_fail_open_when_redis_stops_then_limits_return(upstream, make_gateway, redis_server, caplog):
    config = shared_config(upstream.url, redis_server.url, "rpm: 3")
    gw = make_gateway(config)
    upstream.json(CHAT)
    assert [post(gw).status_code for _ in range(3)] == [200] * 3
    assert post(gw).status_code == 429
    redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="gateway.limits"):
        served = [post(gw) for _ in range(5)]
    assert [r.status_code for r in served] == [200] * 5  # fail open: served without limits
    assert "x-ratelimit-limit-requests" not in served[0].headers
    assert "rate-limit store unreachable" in caplog.text and caplog.text.count("unreachable") == 1  # once per outage
    stats = httpx.get(f"{gw.url}/admin/access").json()["limits"]
    assert stats["failed_open"] == 5 and stats["store_errors"] >= 1
    # Redis back (empty): limits are enforced again once the retry interval has passed
    redis_server.start()
    wait_for(lambda: "x-ratelimit-limit-requests" in post(gw).headers, what="limits to be enforced again")
    codes = [post(gw).status_code for _ in range(3)]  # the request above was the first of three
    assert codes == [200, 200, 429]


def test_fail_closed_answers_503(upstream, make_gateway, redis_server):
    config = shared_config(upstream.url, redis_server.url, "rpm: 3", extra_limits="  on_redis_error: reject")
    gw = make_gateway(config)
    upstream.json(CHAT)
    assert post(gw).status_code == 200
    redis_server.stop()
    r = post(gw)
    assert r.status_code == 503 and r.json()["error"]["code"] == "limits_unavailable"
    assert r.headers["retry-after"] == "1"
    assert httpx.get(f"{gw.url}/admin/access").json()["limits"]["failed_closed"] == 1
    assert len(upstream.received) == 1


def test_redis_store_matches_memory_semantics(redis_server):
    """The Lua scripts against the in-process implementation, step by step."""
    from gateway.access.limits import MemoryLimits

    spec = LimitSpec("k1", rpm=2, tpm=100, max_concurrent=3)

    async def run():
        store = RedisLimits(LimitSettings(redis_url=redis_server.url))
        mem = MemoryLimits()
        try:
            out = []
            for rid, tokens in (("a", 40), ("b", 40), ("c", 10)):
                r = await store.admit(spec, rid, tokens)
                m = mem.admit_now(spec, rid, tokens)
                out.append((r.ok, r.reason, m.ok, m.reason))
            await store.settle(spec, "a", -30, 0.0, True)  # used 10 of 40
            mem.settle_now(spec, "a", -30, 0.0, True)
            usage = await store.usage(spec)
            return out, usage, await mem.usage(spec)
        finally:
            await store.close()

    out, usage, mem_usage = asyncio.run(run())
    assert out == [(True, "", True, ""), (True, "", True, ""), (False, "rpm", False, "rpm")]
    assert usage["in_flight"] == mem_usage["in_flight"] == 1
    assert 50 <= usage["tokens_remaining"] <= 51 and 50 <= mem_usage["tokens_remaining"] <= 51
