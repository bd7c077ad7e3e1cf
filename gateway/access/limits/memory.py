"""The in-process limits store (no ``redis_url``): plain dicts, atomic without locks because
the event loop runs one thing at a time. Counters live as long as the process."""

from __future__ import annotations

import math
import time

from gateway.access.limits.clock import PeriodClock, periods
from gateway.access.limits.spec import TOO_LARGE, Decision, LimitSpec, bucket_level


class _KeyState:
    """One key's counters: bucket levels at their last update (``*_t``, monotonic s), in-flight
    request ids → lease end, spend per period id."""

    __slots__ = ("r_level", "r_t", "t_level", "t_t", "inflight", "spend")

    def __init__(self) -> None:
        self.r_level: float | None = None  # None: full
        self.t_level: float | None = None
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
        if rl is not None and rpm is not None:
            rl -= 1
            st.r_level, st.r_t = rl, now
            req_reset = (rpm - rl) * 60 / rpm
        if tl is not None and tpm is not None:
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
            out["requests_remaining"] = math.floor(bucket_level(state, spec.rpm, now))
        if spec.tpm is not None:
            state = None if st.t_level is None else [st.t_level, st.t_t]
            out["tokens_remaining"] = math.floor(bucket_level(state, spec.tpm, now))
        if spec.max_concurrent is not None:
            out["in_flight"] = len(st.inflight)
        if spec.budgeted:
            out["spent_usd_day"] = round(st.spend.get(day, 0.0), 6)
            out["spent_usd_month"] = round(st.spend.get(month, 0.0), 6)
        return out

    async def close(self) -> None:
        return None
