"""Deferred request metrics expose what immediate prometheus-client updates would have."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway.observability.deferred import DeferredCounter, DeferredHistogram, FlushFirst, deferrable

BOUNDS = (0.01, 0.02, 0.04, 1.0)
VALUES = [0.0, 0.005, 0.01, 0.010001, 0.02, 0.03, 0.04, 0.5, 1.0, 1.5, 1e9, -1.0]


def _exposition(registry: CollectorRegistry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


def test_deferred_series_read_as_immediate_ones_whenever_the_registry_is_collected():
    immediate, deferred = CollectorRegistry(), CollectorRegistry()
    pending: list = []
    deferred.register(FlushFirst(lambda: [p.flush() for p in pending]))
    series = {}
    for registry in (immediate, deferred):
        series[registry] = (Histogram("latency_seconds", "h", ["route"], buckets=BOUNDS, registry=registry),
                            Counter("calls", "c", ["route"], registry=registry))
    hist, count = series[deferred]
    child = hist.labels("a")
    assert deferrable(child, (*BOUNDS, float("inf")))
    d_hist, d_count = DeferredHistogram(child, (*BOUNDS, float("inf"))), DeferredCounter(count.labels("a"))
    pending += [d_hist, d_count]
    for rounds in range(2):  # values added after a collection are added at the next one
        for value in VALUES:
            series[immediate][0].labels("a").observe(value)
            series[immediate][1].labels("a").inc(2.5)
            d_hist.observe(value)
            d_count.inc(2.5)
        assert _exposition(deferred) == _exposition(immediate), rounds
    assert 'latency_seconds_bucket{le="0.01",route="a"} 8.0' in _exposition(deferred)  # <= bound: in it
