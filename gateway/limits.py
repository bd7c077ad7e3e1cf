"""Per-key limits: requests and tokens per minute, requests in flight, spend per day / month.

RPM and TPM are token buckets holding a minute's worth (``rpm`` requests, ``tpm`` tokens) and
refilling continuously, so ``x-ratelimit-reset-*`` is the time until the bucket is full again
(OpenAI's meaning). A request takes one request and its *estimated* tokens (prompt + its
``max_tokens`` or ``limits.default_max_tokens``) when admitted; ``settle`` corrects the token
bucket with the real usage afterwards (a refund, or a debt the next requests wait out), frees
the in-flight slot and adds the request's cost to the key's spend for the UTC day and month.

Two stores with one behaviour: ``MemoryLimits`` (one process; plain dicts, atomic because the
event loop runs one thing at a time) and ``RedisLimits`` (shared by every instance: one Lua
script admits atomically, using Redis' clock; another settles). ``Limiter`` wraps either and
applies ``limits.on_redis_error`` when Redis fails: fail open (counted, logged once per
outage, Redis skipped for ``redis_retry_s``) or fail closed (503).
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import math
import time
from dataclasses import dataclass

import orjson

from gateway.config.access import LimitSettings
from gateway.errors import ServiceUnavailableError

log = logging.getLogger("gateway.limits")

TOO_LARGE = "too_large"


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """The limits of one key (``None``: no such limit)."""

    key_id: str
    rpm: int | None = None
    tpm: int | None = None
    max_concurrent: int | None = None
    budget_day: float | None = None
    budget_month: float | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.max_concurrent, self.budget_day,
                                            self.budget_month))

    @property
    def budgeted(self) -> bool:
        return self.budget_day is not None or self.budget_month is not None


@dataclass(slots=True)
class Decision:
    """The outcome of an admission.

    ``reason`` (when refused): ``concurrency``, ``budget_day``, ``budget_month``, ``rpm``,
    ``tpm`` or ``too_large`` (the estimate alone exceeds ``tpm``). ``retry_after_s``: when a
    retry can succeed. ``req_remaining`` / ``tok_remaining``: bucket levels after this request
    (``None`` without that limit); ``*_reset_s``: seconds until full. ``spent``: the period's
    spend (budget refusals). ``degraded``: Redis failed and the request was let through.
    """

    ok: bool
    reason: str = ""
    retry_after_s: float = 0.0
    req_remaining: float | None = None
    req_reset_s: float = 0.0
    tok_remaining: float | None = None
    tok_reset_s: float = 0.0
    spent: float = 0.0
    degraded: bool = False


def periods(now: float) -> tuple[str, str, float, float]:
    """``(day_id, month_id, seconds_to_next_day, seconds_to_next_month)`` in UTC."""
    tm = time.gmtime(now)
    day_start = calendar.timegm((tm.tm_year, tm.tm_mon, tm.tm_mday, 0, 0, 0))
    year, month = (tm.tm_year + 1, 1) if tm.tm_mon == 12 else (tm.tm_year, tm.tm_mon + 1)
    month_end = calendar.timegm((year, month, 1, 0, 0, 0))
    return (f"{tm.tm_year:04d}{tm.tm_mon:02d}{tm.tm_mday:02d}", f"{tm.tm_year:04d}{tm.tm_mon:02d}",
            day_start + 86400 - now, month_end - now)


class PeriodClock:
    """``periods(now)`` memoised until the next UTC midnight (budgets ask on every request)."""

    __slots__ = ("_until", "_day", "_month", "_day_end", "_month_end")

    def __init__(self):
        self._until = 0.0

    def __call__(self, now: float) -> tuple[str, str, float, float]:
        if now >= self._until or now < self._until - 86400:
            day, month, to_day, to_month = periods(now)
            self._day, self._month = day, month
            self._day_end, self._month_end = now + to_day, now + to_month
            self._until = self._day_end
        return self._day, self._month, self._day_end - now, self._month_end - now


def _bucket_level(state: list[float] | None, cap: int, now: float) -> float:
    """Level of a bucket stored as ``[level, t]`` refilled at ``cap`` per minute up to ``cap``."""
    if state is None:
        return float(cap)
    return min(float(cap), state[0] + (now - state[1]) * cap / 60.0)


# --- token estimates --------------------------------------------------------------------
def _text_chars(value) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        total = 0
        for part in value:
            if isinstance(part, str):
                total += len(part)
            elif isinstance(part, dict):
                text = part.get("text")
                total += len(text) if isinstance(text, str) else 340  # images and the like: ~85 tokens
            elif isinstance(part, int):
                total += 4  # a token id
            elif isinstance(part, list):
                total += _text_chars(part)
        return total
    return 0


def estimate_tokens(endpoint: str, body: dict, default_max_tokens: int | None, counter=None) -> int:
    """Tokens a request may use: its prompt (``counter``: a ``TokenCounter`` for tiktoken, else
    ~4 characters per token) plus ``max_completion_tokens`` / ``max_tokens`` (or
    ``default_max_tokens``) times ``n``; ``default_max_tokens=None``: the prompt alone."""
    model = body.get("model") or ""
    if counter is not None:
        prompt = counter.count_prompt(endpoint, body, model)
    elif endpoint == "chat/completions":
        chars, messages = 0, body.get("messages") or ()
        for m in messages:
            if isinstance(m, dict):
                chars += _text_chars(m.get("content"))
                if m.get("tool_calls"):
                    chars += len(orjson.dumps(m["tool_calls"]))
        if body.get("tools"):
            chars += len(orjson.dumps(body["tools"]))
        prompt = chars // 4 + 3 * len(messages) + 3
    else:
        prompt = _text_chars(body.get("prompt") if endpoint == "completions" else body.get("input")) // 4 + 1
    if default_max_tokens is not None and endpoint in ("chat/completions", "completions"):
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if not isinstance(limit, int) or limit <= 0:
            limit = default_max_tokens
        n = body.get("n")
        return prompt + limit * (n if isinstance(n, int) and 0 < n <= 128 else 1)
    return prompt


# --- in-process store ---------------------------------------------------------------------
class _KeyState:
    """One key's counters: bucket levels at their last update (``*_t``, monotonic s), in-flight
    request ids → lease end, spend per period id."""

    __slots__ = ("r_level", "r_t", "t_level", "t_t", "inflight", "spend")

    def __init__(self):
        self.r_level = self.t_level = None  # None: full
        self.r_t = self.t_t = 0.0
        self.inflight: dict[str, float] = {}
        self.spend: dict[str, float] = {}


class MemoryLimits:
    """Counters in this process (``redis_url`` unset). Safe without locks on one event loop."""

    def __init__(self, lease_s: float = 900.0):
        self._keys: dict[str, _KeyState] = {}
        self._lease_s = lease_s
        self._periods = PeriodClock()

    def _state(self, key_id: str) -> _KeyState:
        st = self._keys.get(key_id)
        if st is None:
            st = self._keys[key_id] = _KeyState()
        return st

    async def admit(self, spec: LimitSpec, request_id: str, tokens: int) -> Decision:
        return self.admit_now(spec, request_id, tokens)

    def admit_now(self, spec: LimitSpec, request_id: str, tokens: int, now: float | None = None) -> Decision:
        now = time.monotonic() if now is None else now
        st = self._state(spec.key_id)
        maxc = spec.max_concurrent
        if maxc is not None and len(st.inflight) >= maxc:
            for rid in [r for r, until in st.inflight.items() if until < now]:  # slots never settled
                del st.inflight[rid]
            if len(st.inflight) >= maxc:
                return Decision(False, "concurrency", 1.0)
        if spec.budget_day is not None or spec.budget_month is not None:
            refusal = self._budget_refusal(spec, st, self._periods(time.time()))
            if refusal is not None:
                return refusal
        rpm, tpm = spec.rpm, spec.tpm
        rl = tl = None
        if rpm is not None:
            rl = rpm if st.r_level is None else min(rpm, st.r_level + (now - st.r_t) * rpm / 60.0)
            if rl < 1:
                return Decision(False, "rpm", (1 - rl) * 60 / rpm, rl, (rpm - rl) * 60 / rpm)
        if tpm is not None:
            tl = tpm if st.t_level is None else min(tpm, st.t_level + (now - st.t_t) * tpm / 60.0)
            if tokens > tpm:
                return Decision(False, TOO_LARGE, 0.0, rl, 0.0, tl, (tpm - tl) * 60 / tpm)
            if tl < tokens:
                return Decision(False, "tpm", (tokens - tl) * 60 / tpm, rl, 0.0, tl, (tpm - tl) * 60 / tpm)
        req_reset = tok_reset = 0.0
        if rl is not None:
            rl -= 1
            st.r_level, st.r_t = rl, now
            req_reset = (rpm - rl) * 60 / rpm
        if tl is not None:
            tl -= tokens
            st.t_level, st.t_t = tl, now
            tok_reset = (tpm - tl) * 60 / tpm
        if maxc is not None:
            st.inflight[request_id] = now + self._lease_s
        return Decision(True, "", 0.0, rl, req_reset, tl, tok_reset)

    @staticmethod
    def _budget_refusal(spec: LimitSpec, st: _KeyState, period: tuple) -> Decision | None:
        if not st.spend:
            return None
        day, month, to_day, to_month = period
        spent = st.spend
        if spec.budget_day is not None and spent.get(day, 0.0) >= spec.budget_day:
            return Decision(False, "budget_day", to_day, spent=spent[day])
        if spec.budget_month is not None and spent.get(month, 0.0) >= spec.budget_month:
            return Decision(False, "budget_month", to_month, spent=spent[month])
        return None

    async def settle(self, spec: LimitSpec, request_id: str, token_delta: int, cost: float, reserved: bool) -> None:
        self.settle_now(spec, request_id, token_delta, cost, reserved)

    def settle_now(self, spec: LimitSpec, request_id: str, token_delta: int, cost: float, reserved: bool,
                   now: float | None = None) -> None:
        """``token_delta``: real tokens minus the estimate taken (negative: a refund)."""
        st = self._state(spec.key_id)
        if reserved:
            if spec.max_concurrent is not None:
                st.inflight.pop(request_id, None)
            tpm = spec.tpm
            if tpm is not None and token_delta:
                now = time.monotonic() if now is None else now
                level = tpm if st.t_level is None else min(tpm, st.t_level + (now - st.t_t) * tpm / 60.0)
                st.t_level, st.t_t = level - token_delta, now
        if cost > 0 and spec.budgeted:
            day, month, _, _ = self._periods(time.time())
            spent = st.spend
            if len(spent) > 2 and (day not in spent or month not in spent):
                for old in [p for p in spent if p not in (day, month)]:
                    del spent[old]
            spent[day] = spent.get(day, 0.0) + cost
            spent[month] = spent.get(month, 0.0) + cost

    async def usage(self, spec: LimitSpec) -> dict:
        """Current counters of a key (for ``/admin/access``)."""
        now = time.monotonic()
        st = self._state(spec.key_id)
        day, month, _, _ = periods(time.time())
        out: dict = {}
        if spec.rpm is not None:
            state = None if st.r_level is None else [st.r_level, st.r_t]
            out["requests_remaining"] = math.floor(_bucket_level(state, spec.rpm, now))
        if spec.tpm is not None:
            state = None if st.t_level is None else [st.t_level, st.t_t]
            out["tokens_remaining"] = math.floor(_bucket_level(state, spec.tpm, now))
        if spec.max_concurrent is not None:
            out["in_flight"] = len(st.inflight)
        if spec.budgeted:
            out["spent_usd_day"] = round(st.spend.get(day, 0.0), 6)
            out["spent_usd_month"] = round(st.spend.get(month, 0.0), 6)
        return out

    async def close(self) -> None:
        return None


# --- Redis store ------------------------------------------------------------------------
# Buckets are hashes {l: level, t: Redis time}; in-flight slots a sorted set scored by lease
# end; spend plain float counters per period. Every key of one virtual key shares a hash tag
# ({id}) so the scripts also run on Redis Cluster.
_LEVEL = """
local function level(key, cap, now)
  local v = redis.call('HMGET', key, 'l', 't')
  local l, ts = tonumber(v[1]), tonumber(v[2])
  if l == nil or ts == nil then return cap end
  local x = l + (now - ts) * cap / 60
  if x > cap then x = cap end
  return x
end
local function store(key, cap, l, now)
  redis.call('HSET', key, 'l', tostring(l), 't', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(((cap - l) * 60 / cap + 1) * 1000))
end
local function s(x)
  if x == nil then return '' end
  return tostring(x)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

ADMIT_LUA = _LEVEL + """
-- KEYS: requests bucket, tokens bucket, in-flight set, spend day, spend month
-- ARGV: rpm, tpm, tokens, max_concurrent, lease_s, request_id, budget_day, budget_month (0: none)
local rpm, tpm, need = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local maxc, lease, rid = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local bday, bmonth = tonumber(ARGV[7]), tonumber(ARGV[8])
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= maxc then return {0, 'concurrency', '1'} end
end
if bday > 0 then
  local s = tonumber(redis.call('GET', KEYS[4]) or '0')
  if s >= bday then return {0, 'budget_day', '0', '', '', '', '', tostring(s)} end
end
if bmonth > 0 then
  local s = tonumber(redis.call('GET', KEYS[5]) or '0')
  if s >= bmonth then return {0, 'budget_month', '0', '', '', '', '', tostring(s)} end
end
local rl, tl = nil, nil
if rpm > 0 then
  rl = level(KEYS[1], rpm, now)
  if rl < 1 then return {0, 'rpm', s((1 - rl) * 60 / rpm), s(rl), s((rpm - rl) * 60 / rpm)} end
end
if tpm > 0 then
  tl = level(KEYS[2], tpm, now)
  local treset = tostring((tpm - tl) * 60 / tpm)
  if need > tpm then return {0, 'too_large', '0', s(rl), '0', s(tl), treset} end
  if tl < need then return {0, 'tpm', s((need - tl) * 60 / tpm), s(rl), '0', s(tl), treset} end
end
local out = {1, '', '0', '', '0', '', '0'}
if rpm > 0 then
  rl = rl - 1
  store(KEYS[1], rpm, rl, now)
  out[4], out[5] = tostring(rl), tostring((rpm - rl) * 60 / rpm)
end
if tpm > 0 then
  tl = tl - need
  store(KEYS[2], tpm, tl, now)
  out[6], out[7] = tostring(tl), tostring((tpm - tl) * 60 / tpm)
end
if maxc > 0 then
  redis.call('ZADD', KEYS[3], now + lease, rid)
  redis.call('PEXPIRE', KEYS[3], math.ceil(lease * 1000))
end
return out
"""

SETTLE_LUA = _LEVEL + """
-- KEYS: tokens bucket, in-flight set, spend day, spend month
-- ARGV: token_delta (real - estimate), tpm (0: none), request_id, cost, reserved (1/0)
local delta, tpm, rid, cost, reserved = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5]
if reserved == '1' then
  redis.call('ZREM', KEYS[2], rid)
  if tpm > 0 and delta ~= 0 then store(KEYS[1], tpm, level(KEYS[1], tpm, now) - delta, now) end
end
if cost > 0 then
  redis.call('INCRBYFLOAT', KEYS[3], tostring(cost))
  redis.call('EXPIRE', KEYS[3], 172800)
  redis.call('INCRBYFLOAT', KEYS[4], tostring(cost))
  redis.call('EXPIRE', KEYS[4], 2764800)
end
return 1
"""


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
            return math.floor(_bucket_level(state, cap, now_s))

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


# --- the wrapper the access stage uses -------------------------------------------------------
def _refused(exc: BaseException) -> bool:
    """Whether a store error comes from the network refusing or dropping the connection
    (an outage), as opposed to a slow call or a busy pool (load)."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, (ConnectionRefusedError, ConnectionResetError, BrokenPipeError)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class Limiter:
    """A store plus the Redis-failure policy, and counters for ``/admin/access``.

    ``admit`` never raises for a store failure with ``on_redis_error: allow`` (it returns a
    ``degraded`` decision); with ``reject`` it raises ``ServiceUnavailableError`` (503).
    ``settle`` never raises; with Redis it runs as a background task so the response is not
    held back.
    """

    def __init__(self, settings: LimitSettings):
        self.settings = settings
        self.shared = settings.redis_url is not None
        self.store = RedisLimits(settings) if self.shared else MemoryLimits(settings.concurrency_lease_s)
        self._fail_open = settings.on_redis_error == "allow"
        self._skip_until = 0.0
        self._down = False
        self._consecutive = 0
        self._pending: set[asyncio.Task] = set()
        self.stats = {"admitted": 0, "rejected": 0, "store_errors": 0, "failed_open": 0, "failed_closed": 0}

    def adopt(self, settings: LimitSettings) -> bool:
        """Take new settings in place when they keep the same store (counters survive a reload)."""
        old = self.settings
        store = ("redis_url", "redis_timeout_ms", "redis_connect_timeout_ms", "redis_pool_timeout_ms",
                 "redis_max_connections", "key_prefix")
        if any(getattr(settings, name) != getattr(old, name) for name in store):
            return False
        self.settings = settings
        self._fail_open = settings.on_redis_error == "allow"
        self.store._lease_s = settings.concurrency_lease_s
        return True

    def _failed(self, exc: BaseException, what: str) -> None:
        """Count a store failure. A refused/reset connection, or three failures in a row, mean an
        outage: Redis is then skipped for ``redis_retry_s`` (no request waits on a dead store) and
        it is logged once. A lone timeout only fails the request at hand."""
        self.stats["store_errors"] += 1
        self._consecutive += 1
        if self._consecutive < 3 and not _refused(exc):
            log.debug("rate-limit store failed during %s (%s)", what, type(exc).__name__)
            return
        self._skip_until = time.monotonic() + self.settings.redis_retry_s
        if not self._down:
            self._down = True
            log.error("rate-limit store unreachable during %s (%s); %s until it answers again", what,
                      type(exc).__name__, "serving without limits" if self._fail_open else "rejecting requests (503)")

    def _unavailable(self) -> Decision:
        if self._fail_open:
            self.stats["failed_open"] += 1
            return Decision(True, degraded=True)
        self.stats["failed_closed"] += 1
        raise ServiceUnavailableError("The gateway's rate-limit store is unavailable; try again shortly.",
                                      code="limits_unavailable", headers={"Retry-After": "1"})

    async def admit(self, spec: LimitSpec, request_id: str, tokens: int) -> Decision:
        if not self.shared:
            decision = self.store.admit_now(spec, request_id, tokens)
        else:
            if self._skip_until and time.monotonic() < self._skip_until:
                return self._unavailable()
            try:
                decision = await self.store.admit(spec, request_id, tokens)
            except Exception as exc:  # redis errors, timeouts, pool exhaustion
                self._failed(exc, "admission")
                return self._unavailable()
            self._consecutive = 0
            if self._down:
                self._down = False
                self._skip_until = 0.0
                log.warning("rate-limit store answers again; limits enforced")
        self.stats["admitted" if decision.ok else "rejected"] += 1
        return decision

    def settle(self, spec: LimitSpec, request_id: str, token_delta: int, cost: float, reserved: bool) -> None:
        if not self.shared:
            self.store.settle_now(spec, request_id, token_delta, cost, reserved)
            return
        if self._skip_until and time.monotonic() < self._skip_until:
            return
        task = asyncio.get_running_loop().create_task(self._settle(spec, request_id, token_delta, cost, reserved))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _settle(self, spec, request_id, token_delta, cost, reserved) -> None:
        try:
            await self.store.settle(spec, request_id, token_delta, cost, reserved)
        except Exception as exc:
            self._failed(exc, "settlement")

    async def drain(self) -> None:
        """Wait for background settlements (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def usage(self, spec: LimitSpec) -> dict:
        try:
            return await self.store.usage(spec)
        except Exception as exc:
            return {"error": f"store unavailable ({type(exc).__name__})"}

    async def close(self) -> None:
        await self.drain()
        await self.store.close()


# --- response headers ---------------------------------------------------------------------
def duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1.5s``, ``17.3s``, ``6m0s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{int(seconds * 1000) or 1}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, secs = divmod(int(math.ceil(seconds)), 60)
    if minutes >= 60:
        hours, minutes = divmod(minutes, 60)
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s"


def rate_headers(spec: LimitSpec, d: Decision) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for the limits ``spec`` has (empty when degraded)."""
    out: dict[str, str] = {}
    if d.degraded:
        return out
    left = d.req_remaining
    if spec.rpm is not None and left is not None:
        out["x-ratelimit-limit-requests"] = str(spec.rpm)
        out["x-ratelimit-remaining-requests"] = str(int(left)) if left > 0 else "0"
        out["x-ratelimit-reset-requests"] = duration(d.req_reset_s)
    left = d.tok_remaining
    if spec.tpm is not None and left is not None:
        out["x-ratelimit-limit-tokens"] = str(spec.tpm)
        out["x-ratelimit-remaining-tokens"] = str(int(left)) if left > 0 else "0"
        out["x-ratelimit-reset-tokens"] = duration(d.tok_reset_s)
    return out


def usd(amount: float) -> str:
    """A dollar amount readable at any size: cents from $1 up (``12.50``), else three
    significant digits (``0.0005``, ``0.000412``), never a misleading ``0.00``."""
    if amount >= 1 or amount <= 0:
        return f"{max(amount, 0.0):.2f}"
    digits = min(10, max(2, 2 - math.floor(math.log10(amount))))
    text = f"{amount:.{digits}f}".rstrip("0")
    return text + "0" * max(0, 2 - len(text.split(".")[1]))


def budget_headers(limit: float, spent: float, reset_s: float) -> dict[str, str]:
    """``x-ratelimit-*-budget`` headers of a budget refusal: the period's budget and what is
    left of it in USD, and the time until the period resets (OpenAI's reset format)."""
    return {"x-ratelimit-limit-budget": usd(limit), "x-ratelimit-remaining-budget": usd(max(0.0, limit - spent)),
            "x-ratelimit-reset-budget": duration(reset_s)}
