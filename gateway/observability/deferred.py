"""Request metrics kept as plain numbers until the registry is read.

prometheus-client takes a lock for every increment and finds a histogram's bucket with a Python
loop: a few microseconds a request for the gateway's four histograms and counters, on a path
whose every step is counted. A process that serves on one event loop (not multiprocess mode)
has no second writer, so ``GatewayMetrics`` records each request into the objects below
instead, and ``FlushFirst`` — the first collector of its registry — adds what they hold to the
Prometheus series each time the registry is collected (a scrape of ``/metrics``, any
``generate_latest``). What is exposed is what immediate updates would have exposed.

With ``serve --workers N`` (multiprocess mode) every worker writes its values to files that
another worker's scrape reads, so there the series are updated at once, as before.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any


class DeferredHistogram:
    """Observations of one histogram series (``child``, a labelled ``Histogram``), not yet added."""

    __slots__ = ("_child", "_bounds", "_sum", "_counts")

    def __init__(self, child: Any, bounds: Sequence[float]):
        self._child = child
        self._bounds = tuple(bounds)  # ascending, +Inf last, as the histogram's
        self._sum = 0.0
        self._counts = [0] * len(self._bounds)

    def observe(self, value: float) -> None:
        self._sum += value
        self._counts[bisect_left(self._bounds, value)] += 1  # the first bucket with value <= bound

    def flush(self) -> None:
        counts = self._counts
        if not any(counts):
            return
        child = self._child
        child._sum.inc(self._sum)
        buckets = child._buckets
        for i, n in enumerate(counts):
            if n:
                buckets[i].inc(n)
                counts[i] = 0
        self._sum = 0.0


class DeferredCounter:
    """Increments of one counter series (``child``), not yet added."""

    __slots__ = ("_child", "_n")

    def __init__(self, child: Any):
        self._child = child
        self._n = 0.0

    def inc(self, amount: float = 1) -> None:
        self._n += amount

    def flush(self) -> None:
        if self._n:
            self._child.inc(self._n)
            self._n = 0.0


def deferrable(histogram_child: Any, bounds: Sequence[float]) -> bool:
    """Whether ``histogram_child`` keeps its values where ``DeferredHistogram.flush`` adds them
    (prometheus-client's layout for many years; if a release changes it, updates stay immediate)."""
    buckets = getattr(histogram_child, "_buckets", None)
    return (hasattr(getattr(histogram_child, "_sum", None), "inc") and isinstance(buckets, list)
            and len(buckets) == len(bounds))


class FlushFirst:
    """A collector that yields nothing: collecting it runs ``flush()``. Registered before any
    metric, so a registry's collection sees the deferred values added first."""

    def __init__(self, flush: Callable[[], None]):
        self._flush = flush

    def describe(self) -> list:
        return []  # no series of its own (and registering it then does not collect it)

    def collect(self) -> list:
        self._flush()
        return []
