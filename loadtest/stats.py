"""HDR histograms of latencies (recorded in microseconds) and their percentile summaries.

The generator appends raw samples to compact arrays on the hot path and builds the histogram
after the step, so recording costs the load generator nothing measurable. Histograms are
kept encoded in the JSON results (``HdrHistogram.encode()``), so rounds can be merged and a
result file re-read later.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour
DIGITS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def histogram_of(samples_us: Iterable[int]) -> HdrHistogram:
    """A histogram of microsecond samples (values are clamped into the trackable range)."""
    h = new_histogram()
    record = h.record_value
    for v in samples_us:
        record(LOWEST_US if v < LOWEST_US else (HIGHEST_US if v > HIGHEST_US else v))
    return h


def seconds_to_us(values: Iterable[float]) -> array:
    return array("q", (int(v * 1e6) for v in values))


def summary(h: HdrHistogram) -> dict[str, float | int]:
    """``{"count", "mean", "p50", "p90", "p99", "p99.9", "max"}``; times in milliseconds."""
    n = h.get_total_count()
    if not n:
        return {"count": 0}
    out: dict[str, float | int] = {"count": n, "mean": round(h.get_mean_value() / 1000, 4)}
    for p in PERCENTILES:
        out[f"p{p:g}"] = round(h.get_value_at_percentile(p) / 1000, 4)
    out["max"] = round(h.get_max_value() / 1000, 4)
    return out


def encode(h: HdrHistogram) -> str:
    raw = h.encode()
    return raw.decode() if isinstance(raw, bytes) else raw


def decode(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text)


def merge(encoded: Iterable[str]) -> HdrHistogram:
    """Add up encoded histograms (e.g. the rounds of one benchmark cell)."""
    total = new_histogram()
    for text in encoded:
        if text:
            total.add(decode(text))
    return total
