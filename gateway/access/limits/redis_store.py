"""The shared limits store: counters in Redis, so every gateway instance with the same
``redis_url`` enforces one set of limits (scripts in ``gateway.access.limits.lua``)."""

from __future__ import annotations

import math
import time

from gateway.access.limits.clock import PeriodClock
from gateway.access.limits.lua import ADMIT_LUA, SETTLE_LUA
from gateway.access.limits.spec import Decision, LimitSpec, bucket_level
from gateway.config.access import LimitSettings


def _num(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    if value == "":
        return None
    return float(value)


class RedisLimits:
    """Counters in Redis, shared by every gateway instance using the same ``redis_url``."""

    def __init__(self, settings: LimitSettings):
        import redis.asyncio as aioredis

        if settings.redis_url is None:
            raise ValueError("the shared limit store needs limits.redis_url")
        timeout = settings.redis_timeout_ms / 1000
        self._redis = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=settings.redis_max_connections,
            timeout=settings.redis_pool_timeout_ms / 1000, socket_timeout=timeout,
            socket_connect_timeout=max(timeout, settings.redis_connect_timeout_ms / 1000)))
        self._admit = self._redis.register_script(ADMIT_LUA)
        self._settle = self._redis.register_script(SETTLE_LUA)
        self._prefix = settings.key_prefix
        self._lease_s = settings.concurrency_lease_s
        self._periods = PeriodClock()

    def _keys(self, key_id: str) -> tuple[str, str, str, str, str]:
        day, month, _, _ = self._periods(time.time())
        base = f"{self._prefix}:{{{key_id}}}:"
        return base + "rpm", base + "tpm", base + "inflight", base + "spend:" + day, base + "spend:" + month

    async def admit(self, spec: LimitSpec, request_id: str, tokens: int) -> Decision:
        keys = self._keys(spec.key_id)
        res = await self._admit(keys=keys, args=[
            spec.rpm or 0, spec.tpm or 0, tokens, spec.max_concurrent or 0, self._lease_s, request_id,
            repr(spec.budget_day or 0), repr(spec.budget_month or 0)])
        ok = int(res[0]) == 1
        reason = res[1].decode() if isinstance(res[1], bytes) else str(res[1])
        retry = float(res[2])
        if reason in ("budget_day", "budget_month"):
            _, _, to_day, to_month = self._periods(time.time())
            return Decision(False, reason, to_day if reason == "budget_day" else to_month, spent=float(res[7]))
        if reason == "concurrency":
            return Decision(False, reason, retry)
        extra = [_num(v) for v in res[3:7]] + [None] * (4 - len(res[3:7]))
        return Decision(ok, reason, retry, extra[0], extra[1] or 0.0, extra[2], extra[3] or 0.0)

    async def settle(self, spec: LimitSpec, request_id: str, token_delta: int, cost: float, reserved: bool) -> None:
        if not reserved and cost <= 0:
            return
        _, tok, inflight, day, month = self._keys(spec.key_id)
        await self._settle(keys=[tok, inflight, day, month],
                           args=[token_delta, spec.tpm or 0, request_id, repr(cost if spec.budgeted else 0.0),
                                 "1" if reserved else "0"])

    async def usage(self, spec: LimitSpec) -> dict:
        r, t, inflight, day, month = self._keys(spec.key_id)
        pipe = self._redis.pipeline(transaction=False)
        pipe.hmget(r, "l", "t")
        pipe.hmget(t, "l", "t")
        pipe.zcard(inflight)
        pipe.get(day)
        pipe.get(month)
        pipe.time()
        rv, tv, inflight_n, spent_day, spent_month, now = await pipe.execute()
        now_s = now[0] + now[1] / 1e6

        def level(v, cap):
            state = None if v[0] is None or v[1] is None else [float(v[0]), float(v[1])]
            return math.floor(bucket_level(state, cap, now_s))

        out: dict = {}
        if spec.rpm is not None:
            out["requests_remaining"] = level(rv, spec.rpm)
        if spec.tpm is not None:
            out["tokens_remaining"] = level(tv, spec.tpm)
        if spec.max_concurrent is not None:
            out["in_flight"] = inflight_n
        if spec.budgeted:
            out["spent_usd_day"] = round(float(spent_day or 0), 6)
            out["spent_usd_month"] = round(float(spent_month or 0), 6)
        return out

    async def close(self) -> None:
        await self._redis.aclose()
