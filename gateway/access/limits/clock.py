"""UTC day and month periods for budgets: which period ``now`` falls in and how long until it
ends, memoised so a budget check on every request costs no calendar arithmetic."""

from __future__ import annotations

import calendar
import time


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
