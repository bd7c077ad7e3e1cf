"""The Redis store for real: outages (down from the start, down mid-run, back again), the
blocking pool under concurrency, TTLs and the stored format, corrupt values, hot reload."""

from __future__ import annotations

import asyncio
import collections
import socket
import time

import aiohttp
import httpx
import pytest
import redis

from gateway.app import FINISHERS, WATCHER, build_app
from gateway.cache import CACHE
from gateway.config import load_config
from gateway.proxy.server import BackgroundServer

# Fixtures shared by the cache tests (pytest finds them through this import).
from tests.support.cache import (  # noqa: F401
    CHAT,
    DET,
    REDIS_URL,
    _redis_cleanup,
    cache_config,
    cache_gateway,
    redis_namespace,
    until_stored,
)
from tests.support.polling import wait_for
from tests.support.redis_server import RedisServer


@pytest.fixture
def closed_port():
    """A loopback port that refuses connections for the whole test: bound by us, never listening
    (a port that is merely free now could be taken by another process meanwhile)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(data_dir=str(tmp_path)).start()
    yield server
    server.stop()


def test_redis_down_from_the_start_means_uncached_not_errors(cache_gateway, upstream, closed_port):
    closed = closed_port
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\nstore: redis\n"
                                                  f"redis_url: redis://127.0.0.1:{closed}/0"))
    upstream.json(CHAT)
    for _ in range(5):
        r = gw.post(DET)
        assert r.status_code == 200 and r.json() == CHAT
        assert r.headers["x-gateway-cache"] == "bypass"
    assert len(upstream.received) == 5
    stats = gw.cache.stats
    assert stats.errors >= 1 and stats.errors + stats.skipped >= 5 and stats.hits == 0
    state = httpx.get(f"{gw.url}/admin/cache").json()
    assert state["store"] == "redis" and state["redis_available"] is False and state["stats"]["errors"] >= 1


def test_redis_going_down_mid_run_and_coming_back(cache_gateway, upstream, own_redis):
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\nstore: redis\nredis_url: {own_redis.url}\n"
                                                  "redis_retry_s: 0.3"))
    upstream.json(CHAT)
    assert gw.post(DET).headers["x-gateway-cache"] == "miss"
    until_stored(gw)
    assert gw.post(DET).headers["x-gateway-cache"] == "hit"
    own_redis.stop()

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*[client.post(f"{gw.url}/v1/chat/completions", json=DET)
                                          for _ in range(20)])

    t0 = time.perf_counter()
    results = asyncio.run(burst())
    results += [gw.post(DET) for _ in range(5)]
    # Not stalled on Redis per request (a connect timeout each would take far longer); the bound
    # is loose so that a busy machine passes.
    assert time.perf_counter() - t0 < 20
    assert all(r.status_code == 200 and r.json() == CHAT for r in results)
    assert {r.headers["x-gateway-cache"] for r in results} <= {"bypass", "coalesced"}
    assert gw.cache.stats.errors >= 1
    own_redis.start()  # empty again: a fresh server
    # Once its retry interval has passed, the store is used again: a miss (stored), then a hit.
    wait_for(lambda: gw.post(DET).headers["x-gateway-cache"] == "miss", what="Redis to be used again")
    until_stored(gw)
    assert gw.post(DET).headers["x-gateway-cache"] == "hit"


def test_blocking_pool_serves_many_concurrent_hits(cache_gateway, upstream, redis_namespace):
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\nstore: redis\nredis_url: {REDIS_URL}\n"
                                                  f"namespace: {redis_namespace}\nredis_max_connections: 4\n"
                                                  "redis_timeout_s: 5"))
    upstream.json(CHAT)
    gw.post(DET)
    until_stored(gw)

    async def burst():  # aiohttp's client: httpx's is too slow at this concurrency
        async with aiohttp.ClientSession() as session:
            async def one():
                async with session.post(f"{gw.url}/v1/chat/completions", json=DET) as r:
                    assert r.status == 200 and await r.json() == CHAT
                    return r.headers["x-gateway-cache"]

            return await asyncio.gather(*[one() for _ in range(300)])

    assert collections.Counter(asyncio.run(burst())) == {"hit": 300}
    assert gw.cache.stats.errors == 0 and len(upstream.received) == 1


def test_entry_format_and_ttl_in_redis(cache_gateway, upstream, redis_namespace):
    gw = cache_gateway(cache_config(upstream.url, f"enabled: true\nstore: redis\nredis_url: {REDIS_URL}\n"
                                                  f"namespace: {redis_namespace}\nttl_s: 120"))
    upstream.json(CHAT)
    gw.post(DET)
    gw.post({**DET, "max_tokens": 9}, {"x-gateway-cache-ttl": "7"})
    until_stored(gw)
    client = redis.Redis.from_url(REDIS_URL)
    keys = sorted(client.scan_iter(f"llm-gateway:cache:{redis_namespace}:*"), key=lambda k: -client.pttl(k))
    assert len(keys) == 2
    assert 110_000 < client.pttl(keys[0]) <= 120_000 and 0 < client.pttl(keys[1]) <= 7_000
    assert all(len(k.rsplit(b":", 1)[1]) == 64 for k in keys)  # sha256 hex
    assert client.get(keys[0]).startswith(b"LGC1")
    # A corrupt value is a miss (and gets replaced), never an error.
    client.set(keys[0], b"garbage")
    r = gw.post(DET)
    assert r.status_code == 200 and r.headers["x-gateway-cache"] == "miss"
    until_stored(gw)
    assert gw.post(DET).headers["x-gateway-cache"] == "hit"
    client.close()


def test_hot_reload_enables_the_cache_and_a_new_namespace_invalidates(upstream, tmp_path, redis_namespace):
    path = tmp_path / "gateway.yaml"
    base = cache_config(upstream.url, "enabled: false") + "server: {reload_interval_s: 0.05}\n"
    path.write_text(base)
    upstream.json(CHAT)
    app = build_app(load_config(path))
    records: list = []
    app[FINISHERS].append(records.append)
    with BackgroundServer(app) as gw:
        def status():
            r = httpx.post(f"{gw.url}/v1/chat/completions", json=DET)
            assert r.status_code == 200
            until_stored_app()
            return r.headers.get("x-gateway-cache")

        def until_stored_app():
            wait_for(lambda: not (app[CACHE].flights or app[CACHE]._tasks), interval=0.005,
                     what="pending cache writes")

        def rewrite(cache: str):
            reloads = app[WATCHER].reloads
            path.write_text(cache_config(upstream.url, cache) + "server: {reload_interval_s: 0.05}\n")
            wait_for(lambda: app[WATCHER].reloads > reloads, what="the reload")

        assert status() is None and app[CACHE].store is None
        rewrite("enabled: true")
        assert [status(), status()] == ["miss", "hit"]
        rewrite("enabled: true\nnamespace: v2")
        assert [status(), status()] == ["miss", "hit"]
        rewrite(f"enabled: true\nstore: redis\nredis_url: {REDIS_URL}\nnamespace: {redis_namespace}")
        assert [status(), status()] == ["miss", "hit"]
        assert app[CACHE].store.kind == "redis"
        rewrite("enabled: false")
        assert status() is None and app[CACHE].store is None  # off again: the store is closed
    assert len(upstream.received) == 5
