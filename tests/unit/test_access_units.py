"""Units of the access layer: token buckets with refunds and debts (with a fake clock), budget
periods, estimates, OpenAI's header formats, key extraction, and the admin-safe config dump."""

from __future__ import annotations

import calendar
import hashlib

import pytest
from multidict import CIMultiDict

from gateway.access.keys import presented_key
from gateway.access.limits import (
    Decision,
    LimitSpec,
    MemoryLimits,
    PeriodClock,
    duration,
    estimate_tokens,
    periods,
    rate_headers,
)
from gateway.admin.public_config import public_config
from gateway.config import parse_config
from gateway.plugins.stage import Verdict


def test_request_bucket_refills_continuously():
    m = MemoryLimits()
    spec = LimitSpec("k", rpm=60)  # one request per second
    t = 1000.0
    assert [m.admit_now(spec, str(i), 0, now=t).ok for i in range(61)] == [True] * 60 + [False]
    refused = m.admit_now(spec, "x", 0, now=t)
    assert refused.reason == "rpm" and refused.retry_after_s == pytest.approx(1.0)
    assert refused.req_reset_s == pytest.approx(60.0)
    assert m.admit_now(spec, "y", 0, now=t + 0.5).ok is False
    ok = m.admit_now(spec, "z", 0, now=t + 1.0)
    assert ok.ok and ok.req_remaining == pytest.approx(0.0)
    assert m.admit_now(spec, "w", 0, now=t + 1000).req_remaining == pytest.approx(59.0)  # capped at full


def test_token_bucket_refund_and_debt():
    m = MemoryLimits()
    spec = LimitSpec("k", tpm=600)  # 10 tokens per second
    t = 50.0
    d = m.admit_now(spec, "a", 500, now=t)
    assert d.ok and d.tok_remaining == 100
    assert not m.admit_now(spec, "b", 200, now=t).ok
    m.settle_now(spec, "a", -450, 0.0, True, now=t)  # used 50 of the 500 reserved
    assert m.admit_now(spec, "b", 200, now=t).ok  # 550 left
    m.settle_now(spec, "b", 1000, 0.0, True, now=t)  # used 1200: a debt of 1000
    refused = m.admit_now(spec, "c", 10, now=t)
    assert refused.reason == "tpm" and refused.retry_after_s == pytest.approx((10 - (350 - 1000)) / 10)
    too_big = m.admit_now(spec, "d", 601, now=t + 10_000)
    assert too_big.reason == "too_large" and not too_big.ok


def test_concurrency_slots_and_leases():
    m = MemoryLimits(lease_s=10)
    spec = LimitSpec("k", max_concurrent=2)
    assert m.admit_now(spec, "a", 0, now=0).ok and m.admit_now(spec, "b", 0, now=0).ok
    assert m.admit_now(spec, "c", 0, now=1).reason == "concurrency"
    m.settle_now(spec, "a", 0, 0.0, True)
    assert m.admit_now(spec, "c", 0, now=1).ok
    assert m.admit_now(spec, "d", 0, now=20).ok  # a and b's leases ran out (an instance died)


def test_budget_periods(monkeypatch):
    m = MemoryLimits()
    spec = LimitSpec("k", budget_day=1.0, budget_month=2.5)
    clock = [calendar.timegm((2026, 1, 31, 23, 0, 0))]
    monkeypatch.setattr("gateway.access.limits.time.time", lambda: clock[0])
    m.settle_now(spec, "a", 0, 1.2, False)
    d = m.admit_now(spec, "b", 0)
    assert d.reason == "budget_day" and d.retry_after_s == pytest.approx(3600) and d.spent == pytest.approx(1.2)
    clock[0] += 3600  # a new day and a new month
    assert m.admit_now(spec, "c", 0).ok
    m.settle_now(spec, "c", 0, 0.9, False)
    clock[0] += 86400
    m.settle_now(spec, "c", 0, 0.9, False)
    clock[0] += 86400
    m.settle_now(spec, "c", 0, 0.9, False)
    d = m.admit_now(spec, "d", 0)
    assert d.reason == "budget_month" and d.spent == pytest.approx(2.7)


def test_periods_and_clock():
    now = calendar.timegm((2026, 12, 31, 12, 0, 0))
    assert periods(now) == ("20261231", "202612", 43200, 43200)
    clock = PeriodClock()
    assert clock(now) == periods(now) and clock(now + 43200) == periods(now + 43200)
    assert clock(now) == periods(now)  # going back in time recomputes


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (0.0004, "1ms"), (0.02, "20ms"), (1, "1s"), (1.5, "1.5s"),
                                          (17.345, "17.3s"), (60, "1m0s"), (360, "6m0s"), (3725, "1h2m5s")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_rate_headers():
    spec = LimitSpec("k", rpm=10, tpm=1000)
    h = rate_headers(spec, Decision(True, "", 0.0, 8.7, 7.8, -20.0, 61.2))
    assert h == {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "8",
                 "x-ratelimit-reset-requests": "7.8s", "x-ratelimit-limit-tokens": "1000",
                 "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "1m2s"}
    assert rate_headers(spec, Decision(True, degraded=True)) == {}
    assert rate_headers(LimitSpec("k", rpm=5), Decision(True, "", 0.0, 4, 12.0)) == {
        "x-ratelimit-limit-requests": "5", "x-ratelimit-remaining-requests": "4",
        "x-ratelimit-reset-requests": "12s"}


def test_estimates():
    chat = {"model": "m", "messages": [{"role": "user", "content": "x" * 400}]}
    assert estimate_tokens("chat/completions", chat, 100) == 100 + 3 + 3 + 100
    assert estimate_tokens("chat/completions", {**chat, "max_tokens": 7, "n": 3}, 100) == 106 + 21
    assert estimate_tokens("chat/completions", {**chat, "max_completion_tokens": 9}, 100) == 115
    assert estimate_tokens("chat/completions", chat, None) == 106  # the prompt alone
    parts = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "y" * 40},
                                                                    {"type": "image_url", "image_url": {}}]}]}
    assert estimate_tokens("chat/completions", parts, 0) == (40 + 340) // 4 + 6
    assert estimate_tokens("completions", {"model": "m", "prompt": ["a" * 8, "b" * 8]}, 5) == 5 + 5
    assert estimate_tokens("embeddings", {"model": "m", "input": [1, 2, 3]}, 5) == 4


def test_presented_key_precedence():
    assert presented_key(CIMultiDict({"Authorization": "Bearer  k1 ", "api-key": "k2"})) == "k1"
    assert presented_key(CIMultiDict({"api-key": "k2", "x-api-key": "k3"})) == "k2"
    assert presented_key(CIMultiDict({"x-api-key": "k3"})) == "k3"
    assert presented_key(CIMultiDict({"Authorization": "Basic abc"})) == ""
    assert presented_key(CIMultiDict()) == "" and presented_key(None) == ""


def test_verdicts():
    assert Verdict.allow().action == "allow" and Verdict.modify().body is None
    assert Verdict.reject("no", status=451, code="c") == Verdict("reject", None, 451, "no", "c")
    with pytest.raises(ValueError):
        Verdict.reject("no", status=500)


def test_public_config_masks_every_secret():
    key_hash = hashlib.sha256(b"k").hexdigest()
    cfg = parse_config(f"""
server: {{admin_key: ADMIN-SECRET}}
backends:
  a: {{type: openai, base_url: 'http://x/v1', api_key: PROVIDER-SECRET, headers: {{X-Org: HEADER-SECRET}}}}
routing: {{redis_url: 'redis://user:REDIS-SECRET@h:6379/0'}}
limits: {{redis_url: 'redis://:LIMITS-SECRET@h:6379/0'}}
telemetry: {{clickhouse: {{dsn: 'http://u:CH-SECRET@h:8123/db'}}}}
keys: [{{tenant: t, sha256: {key_hash}}}]
""").config
    text = str(public_config(cfg))
    for secret in ("ADMIN-SECRET", "PROVIDER-SECRET", "HEADER-SECRET", "REDIS-SECRET", "LIMITS-SECRET", "CH-SECRET",
                   key_hash):
        assert secret not in text
    dumped = public_config(cfg)
    assert dumped["backends"]["a"]["headers"] == {"X-Org": "***"} and dumped["keys"][0]["tenant"] == "t"
    assert dumped["routing"]["redis_url"] == "redis://user:***@h:6379/0"


def test_store_failures_lone_timeouts_fail_one_request_refusals_open_an_outage():
    import asyncio

    from gateway.access.limits import Limiter
    from gateway.config.access import LimitSettings
    from gateway.core.errors import ServiceUnavailableError

    class FlakyStore:
        def __init__(self):
            self.errors: list[BaseException] = []
            self.calls = 0

        async def admit(self, spec, rid, tokens):
            self.calls += 1
            if self.errors:
                raise self.errors.pop(0)
            return Decision(True, "", 0.0, 1.0, 1.0)

    async def run():
        limiter = Limiter(LimitSettings(redis_url="redis://127.0.0.1:1/0", redis_retry_s=60))
        store = limiter.store = FlakyStore()
        spec = LimitSpec("k", rpm=5)
        store.errors = [TimeoutError()]
        assert (await limiter.admit(spec, "a", 0)).degraded  # this request fails open ...
        assert not (await limiter.admit(spec, "b", 0)).degraded  # ... the next one uses the store
        refused = ConnectionError("Error 111")
        refused.__cause__ = ConnectionRefusedError(111, "refused")
        store.errors = [refused]
        assert (await limiter.admit(spec, "c", 0)).degraded
        calls = store.calls
        assert (await limiter.admit(spec, "d", 0)).degraded and store.calls == calls  # skipped: an outage
        assert limiter.stats["failed_open"] == 3 and limiter.stats["store_errors"] == 2
        strict = Limiter(LimitSettings(redis_url="redis://127.0.0.1:1/0", on_redis_error="reject"))
        strict.store = FlakyStore()
        strict.store.errors = [TimeoutError()] * 3
        for _ in range(3):
            with pytest.raises(ServiceUnavailableError):
                await strict.admit(spec, "e", 0)
        assert strict._skip_until > 0  # three in a row: an outage

    asyncio.run(run())
