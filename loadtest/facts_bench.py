"""Facts-record cost: ``encode_request`` (runs on the event loop for every request) and, for the
ingester's side, ``decode`` + building the rows.

``python -m loadtest.facts_bench`` times both for a typical chat JSON request and a 20-chunk
stream (and a 2 MB request body, the oversized path), built as the gateway builds them: the
client's raw body in a ``RequestBody``, aiohttp's case-insensitive headers with a bearer key,
usage reported, one attempt, routing provenance. It prints CPU µs per call (mean, and p50/p99
of 1,000-call slices) and the record's size.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def _contexts(n: int, kind: str) -> list[Any]:
    import orjson
    from multidict import CIMultiDict, CIMultiDictProxy

    from gateway.core.context import Attempt, RequestContext, Usage
    from gateway.core.request_body import client_body

    stream = kind == "stream"
    content = "x" * (2 << 20) if kind == "big" else "Summarise the attached notes in three bullet points."
    payload: dict[str, Any] = {"model": "gpt-4o", "messages": [
        {"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": content}],
        "temperature": 0.2, "max_tokens": 256, "user": "user-17"}
    if stream:
        payload["stream"] = True
    raw = orjson.dumps(payload)
    headers = CIMultiDictProxy(CIMultiDict({
        "Host": "127.0.0.1:8080", "User-Agent": "OpenAI/Python 1.99.0", "Content-Type": "application/json",
        "Authorization": "Bearer sk-bench-0123456789abcdef", "Accept": "application/json",
        "x-gateway-metadata": "team=search,feature=summary", "Content-Length": str(len(raw))}))
    out = []
    for i in range(n):
        t0 = 1000.0 + i
        chunks = [t0 + 0.05 + 0.006 * k for k in range(20)] if stream else []
        out.append(RequestContext(
            request_id=f"0f8fad5b-d9cb-469f-a165-{i:012d}", endpoint="chat/completions", t_start=t0,
            ts_start=1_760_000_000.0 + i, body=client_body(orjson.loads(raw), raw), model_requested="gpt-4o",
            stream=stream, client_ip="127.0.0.1", user_agent="OpenAI/Python 1.99.0", backend="openai",
            provider="openai", upstream_model="gpt-4o", model_served="gpt-4o-2024-08-06", attempts=1,
            status_code=200, finish_reason="stop", usage=Usage(prompt_tokens=31, completion_tokens=40, total_tokens=71),
            t_upstream_start=t0 + 0.001, t_upstream_headers=t0 + 0.03, t_first_token=t0 + 0.05, t_end=t0 + 0.2,
            chunk_times=chunks, completion_text=["word "] * 20, headers=headers, config_hash="cfg",
            tenant="acme", metadata={"key_name": "search-prod"}, route_rule="default", strategy="ordered",
            cache_status="miss",
            attempt_log=[Attempt("openai", "openai", "gpt-4o", t0 + 0.001, t0 + 0.2, t0 + 0.05, 200)],
            route_candidates=[{"target": "openai", "score": 1.0, "skipped": ""}]))
    return out


def _time(fn, items: list[Any]) -> dict[str, float]:
    """CPU µs per call (this process's CPU time: other processes on a shared machine do not
    count), mean and p50/p99 over 1,000-call slices."""
    slices = []
    total = 0.0
    clock = time.process_time
    for start in range(0, len(items), 1000):
        part = items[start:start + 1000]
        t0 = clock()
        for item in part:
            fn(item)
        took = clock() - t0
        total += took
        slices.append(took / len(part) * 1e6)
    slices.sort()
    return {"mean_us": round(total / len(items) * 1e6, 2), "p50_us": round(slices[len(slices) // 2], 2),
            "p99_us": round(slices[min(len(slices) - 1, int(len(slices) * 0.99))], 2)}


def bench(n: int) -> dict[str, Any]:
    from gateway.core.pricing import PriceTable
    from gateway.core.tokens import TokenCounter
    from gateway.telemetry.facts import decode, encode_request
    from gateway.telemetry.record import RowBuilder

    builder = RowBuilder(config_hash="bench", instance="bench", prices=PriceTable(), tokens=TokenCounter())
    report: dict[str, Any] = {}
    for kind, count in (("json", n), ("stream", n), ("big", 200)):
        items = _contexts(count, kind)
        for ctx in items[:200]:  # warm up (fingerprint cache, format caches)
            encode_request(ctx, keep_text=False)
        encode = _time(lambda c: encode_request(c, keep_text=False), items)
        payloads = [encode_request(c, keep_text=False) for c in items]

        def ingest(p: bytes) -> None:
            facts = decode(p)
            row = builder.request_row(facts)  # type: ignore[arg-type]
            builder.attempt_rows(facts, row[0])  # type: ignore[arg-type]

        report[kind] = {"encode": encode, "record_bytes": len(payloads[0]),
                        "decode_and_rows": _time(ingest, payloads)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="requests per kind (default 100,000)")
    print(json.dumps(bench(parser.parse_args().n), indent=2))


if __name__ == "__main__":
    main()
