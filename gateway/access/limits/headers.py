"""Response headers of the limits: OpenAI's ``x-ratelimit-*`` (and their reset format) and the
budget headers of a budget refusal."""

from __future__ import annotations

import math

from gateway.access.limits.spec import Decision, LimitSpec


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
