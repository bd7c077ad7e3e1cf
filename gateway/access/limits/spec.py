"""What one key may use (``LimitSpec``) and what an admission decided (``Decision``): the
values every limits store takes and returns, and the token-bucket arithmetic both stores share."""

from __future__ import annotations

from dataclasses import dataclass

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


def bucket_level(state: list[float] | None, cap: int, now: float) -> float:
    """Level of a bucket stored as ``[level, t]`` refilled at ``cap`` per minute up to ``cap``."""
    if state is None:
        return float(cap)
    return min(float(cap), state[0] + (now - state[1]) * cap / 60.0)
