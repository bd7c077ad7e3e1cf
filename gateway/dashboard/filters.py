"""The dashboard's time range and filters: parsed from query parameters, rendered as SQL
conditions with ClickHouse query parameters (``{name:Type}``), never as literals.

Query parameters (all optional):

- ``range``: ``15m``, ``1h``, ``6h``, ``24h``, ``7d``, ``30d`` … (default ``1h``), ending now;
  or ``from`` / ``to`` in epoch milliseconds (``to`` defaults to now). At most 90 days.
- ``tenant``, ``model`` (the public name, ``model_requested``), ``backend``: exact values.
- ``prompt``: a prompt name, or ``name@version`` for one version.

Which conditions a query gets depends only on which filters are set (a fixed set of clauses);
every value travels as a parameter.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

MAX_RANGE_S = 90 * 86400
DEFAULT_RANGE = "1h"
_RANGE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
STEPS_S = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
TARGET_POINTS = 120
MAX_VALUE_LEN = 200


class FilterError(ValueError):
    """A malformed range or filter value (answered as 400)."""


def parse_duration(text: str) -> float:
    """``"90s"``, ``"15m"``, ``"24h"``, ``"7d"``, ``"2w"`` → seconds."""
    m = _RANGE_RE.match(text or "")
    if not m:
        raise FilterError(f"bad duration {text!r} (use e.g. 15m, 1h, 24h, 7d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def pick_step(span_s: float) -> int:
    """A bucket width (seconds, ≥ 60: the rollup's minute) giving about ``TARGET_POINTS`` points."""
    for step in STEPS_S:
        if span_s / step <= TARGET_POINTS:
            return step
    return STEPS_S[-1]


@dataclass(frozen=True)
class Filters:
    """A time range (epoch ms, ``[from_ms, to_ms)``) and the row filters; empty means any."""

    from_ms: int
    to_ms: int
    tenant: str = ""
    model: str = ""
    backend: str = ""
    prompt: str = ""
    version: int | None = None

    @property
    def span_s(self) -> float:
        return (self.to_ms - self.from_ms) / 1000

    @property
    def step_s(self) -> int:
        return pick_step(self.span_s)

    @property
    def rollup_ok(self) -> bool:
        """Whether ``llm_requests_1m`` can answer (it has no prompt columns)."""
        return not self.prompt

    def describe(self) -> dict:
        """The range and filters as the JSON answers echo them."""
        return {"from": self.from_ms, "to": self.to_ms, "step_s": self.step_s, "tenant": self.tenant,
                "model": self.model, "backend": self.backend,
                "prompt": self.prompt + (f"@{self.version}" if self.version is not None else "")}

    # --- SQL ------------------------------------------------------------------------------
    def params(self) -> dict:
        """Values of every placeholder the conditions below may use."""
        p = {"from_ms": self.from_ms, "to_ms": self.to_ms, "tenant": self.tenant, "model": self.model,
             "backend": self.backend, "prompt": self.prompt, "step": self.step_s}
        if self.version is not None:
            p["version"] = self.version
        return p

    def _dims(self, model_col: str, prefix: str = "", prompt: bool = True) -> list[str]:
        out = []
        if self.tenant:
            out.append(f"{prefix}tenant = {{tenant:String}}")
        if self.model:
            out.append(f"{prefix}{model_col} = {{model:String}}")
        if self.backend:
            out.append(f"{prefix}backend = {{backend:String}}")
        if prompt and self.prompt:
            out.append(f"{prefix}prompt_id = {{prompt:String}}")
            if self.version is not None:
                out.append(f"{prefix}prompt_version = {{version:UInt32}}")
        return out

    def raw_where(self, prefix: str = "", time_col: str = "ts_start") -> str:
        """Conditions on ``llm_requests`` (alias ``prefix``, e.g. ``"r."``): range and filters."""
        conds = [f"{prefix}{time_col} >= fromUnixTimestamp64Milli({{from_ms:Int64}}, 'UTC')",
                 f"{prefix}{time_col} < fromUnixTimestamp64Milli({{to_ms:Int64}}, 'UTC')"]
        return " AND ".join(conds + self._dims("model_requested", prefix))

    def dims_where(self, prefix: str = "") -> str:
        """The filters without the range (``1`` when none): for drift's own windows."""
        return " AND ".join(self._dims("model_requested", prefix)) or "1"

    def rollup_where(self) -> str:
        """Conditions on ``llm_requests_1m``: whole minutes overlapping the range, and filters."""
        conds = ["minute >= toStartOfMinute(fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC'))",
                 "minute < fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')"]
        return " AND ".join(conds + self._dims("model", prompt=False))


def _text(query: Mapping[str, str], name: str) -> str:
    value = (query.get(name) or "").strip()
    if len(value) > MAX_VALUE_LEN:
        raise FilterError(f"{name} is too long")
    return value


def _ms(query: Mapping[str, str], name: str) -> int | None:
    value = (query.get(name) or "").strip()
    if not value:
        return None
    try:
        return int(float(value))
    except ValueError:
        raise FilterError(f"{name} must be epoch milliseconds") from None


def parse_prompt(value: str) -> tuple[str, int | None]:
    """``"name"`` → ``(name, None)``; ``"name@3"`` → ``(name, 3)``."""
    name, sep, version = value.rpartition("@")
    if not sep:
        return value, None
    if not version.isdigit():
        raise FilterError(f"bad prompt version in {value!r} (use name or name@version)")
    return name, int(version)


def parse_filters(query: Mapping[str, str], now: float | None = None, default_range: str = DEFAULT_RANGE) -> Filters:
    """``Filters`` from a request's query parameters (``now``: epoch seconds, for tests)."""
    now_ms = int((time.time() if now is None else now) * 1000)
    to_ms = _ms(query, "to") or now_ms
    from_ms = _ms(query, "from")
    if from_ms is None:
        from_ms = to_ms - int(parse_duration(query.get("range") or default_range) * 1000)
    if from_ms >= to_ms:
        raise FilterError("from must be before to")
    if (to_ms - from_ms) / 1000 > MAX_RANGE_S:
        raise FilterError("the range is limited to 90 days")
    prompt, version = parse_prompt(_text(query, "prompt"))
    return Filters(from_ms=from_ms, to_ms=to_ms, tenant=_text(query, "tenant"), model=_text(query, "model"),
                   backend=_text(query, "backend"), prompt=prompt, version=version)
