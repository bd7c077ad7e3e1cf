"""The cache micro-benchmark, small: a memory hit costs less gateway time than a miss to a
zero-latency upstream (JSON and streams). ``python -m loadtest.bench_cache`` is the full run."""

from __future__ import annotations

from loadtest.bench_cache import bench, table


def test_a_memory_hit_costs_less_gateway_time_than_a_miss():
    results = bench(requests=200, tokens=20, warmup=50)
    print(table(results))
    for kind in ("json", "stream"):
        hit, miss = results[f"{kind} hit"], results[f"{kind} miss"]
        assert hit["cache_status"] == ["hit"] and miss["cache_status"] == ["miss"]
        assert results[f"{kind} bypass"]["cache_status"] == ["bypass"]
        assert hit["gateway_us"]["p50"] < miss["gateway_us"]["p50"]
        assert hit["gateway_us"]["p50"] < 1000  # well under a millisecond
