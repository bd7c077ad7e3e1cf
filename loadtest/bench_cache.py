"""Micro-benchmark: gateway time of a memory-cache hit vs a miss to a zero-latency upstream.

``python -m loadtest.bench_cache [--requests 2000] [--tokens 20] [--pin] [--out FILE.json]``

The fast fake upstream (``loadtest.fake_upstream``, no TTFT, no inter-token delay) runs as a
subprocess; the gateway runs in this process on a uvloop loop in its own thread, with the
memory cache on and telemetry off. A plain blocking HTTP/1.1 keep-alive client sends requests
one at a time (so the client never competes with the gateway for the interpreter while a
request is being handled). For each case the gateway time of every request is read from the
gateway itself: ``t_end - t_start`` of its ``RequestContext`` (from the body being read to the
response's end, upstream hop included), reported in microseconds as p50 / p90 / p99 / mean,
next to the CPU time the gateway's thread spent per request (robust on a busy machine, where
wall times of the upstream hop are noisy) and the client's round trip p50.

Cases: ``json miss`` (a new deterministic request each time: lookup, upstream, capture,
store), ``json hit`` (the same request again), ``json bypass`` (a model whose cache is off:
the stage's cost when it does not apply, upstream included), and the same three for SSE
streams of ``--tokens`` chunks. ``--pin`` runs this process on CPU 0 and the upstream on CPU 1.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import orjson

from loadtest.procs import ManagedProcess, free_port, python_argv

CONFIG = """
telemetry: {{enabled: false}}
backends:
  fake: {{type: openai, base_url: "http://127.0.0.1:{port}/v1", api_key: sk-bench}}
models:
  cached: {{targets: [{{backend: fake, model: m}}]}}
  plain:
    targets: [{{backend: fake, model: m}}]
    cache: {{enabled: false}}
cache: {{enabled: true, store: memory}}
"""


class UvloopServer:
    """The gateway app served from a daemon thread running a uvloop event loop."""

    def __init__(self, app):
        import uvloop

        self.app = app
        self.loop = uvloop.new_event_loop()
        self.port = 0
        self._runner = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="bench-gateway", daemon=True)

    def __enter__(self) -> UvloopServer:
        from gateway.proxy.server import start_site

        self._thread.start()
        self.cpu_clock = time.pthread_getcpuclockid(self._thread.ident)
        self._runner, self.port = asyncio.run_coroutine_threadsafe(
            start_site(self.app, "127.0.0.1", 0, shutdown_timeout=2.0), self.loop).result(30)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_case(conn: http.client.HTTPConnection, records: list, bodies, n: int, cpu_clock: int | None = None) -> dict:
    """Send ``n`` requests (``bodies(i)`` → JSON bytes) one at a time; gateway and client times in µs.
    ``cpu_clock``: the gateway thread's CPU clock (``time.pthread_getcpuclockid``)."""
    start = len(records)
    client_us = []
    cpu0 = time.clock_gettime(cpu_clock) if cpu_clock is not None else 0.0
    for i in range(n):
        payload = bodies(i)
        t0 = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=payload, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        client_us.append((time.perf_counter() - t0) * 1e6)
        if resp.status != 200 or not data:
            raise RuntimeError(f"HTTP {resp.status}: {data[:300]!r}")
    deadline = time.monotonic() + 5
    while len(records) < start + n and time.monotonic() < deadline:
        time.sleep(0.001)
    cpu_us = (time.clock_gettime(cpu_clock) - cpu0) * 1e6 / n if cpu_clock is not None else None
    ctxs = records[start:start + n]
    gateway_us = [(c.t_end - c.t_start) * 1e6 for c in ctxs]
    statuses = {c.cache_status for c in ctxs}
    return {"requests": n, "cache_status": sorted(statuses),
            "gateway_us": {"p50": _pct(gateway_us, 0.5), "p90": _pct(gateway_us, 0.9),
                           "p99": _pct(gateway_us, 0.99), "mean": statistics.fmean(gateway_us)},
            "gateway_cpu_us": cpu_us, "client_us_p50": _pct(client_us, 0.5)}


def bench(requests: int = 2000, tokens: int = 20, pin: bool = False, warmup: int = 200) -> dict:
    """Run every case; returns ``{case: result}`` (see ``run_case``)."""
    from gateway.app import FINISHERS, build_app
    from gateway.config import parse_config

    if pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    port = free_port()
    upstream = ManagedProcess("fake-upstream", python_argv("-m", "loadtest", "fake-upstream", "--port", str(port),
                                                           "--tokens", str(tokens)),
                              url=f"http://127.0.0.1:{port}", ready_url=f"http://127.0.0.1:{port}/health",
                              cpus="1" if pin else None)
    upstream.start()
    results: dict[str, dict] = {}
    try:
        upstream.wait_ready()
        app = build_app(parse_config(CONFIG.format(port=port)))
        records: list = []
        app[FINISHERS].append(records.append)
        with UvloopServer(app) as server:
            conn = http.client.HTTPConnection("127.0.0.1", server.port)
            messages = [{"role": "user", "content": "Summarise the benchmark in one line."}]
            for stream in (False, True):
                kind = "stream" if stream else "json"
                extra = {"stream": True} if stream else {}
                base = {"model": "cached", "messages": messages, "temperature": 0, **extra}
                same = orjson.dumps(base)
                unique = lambda i, s=stream, b=base: orjson.dumps(  # noqa: E731
                    {**b, "messages": [{"role": "user", "content": f"request {s} {i} {time.perf_counter_ns()}"}]})
                plain = orjson.dumps({**base, "model": "plain"})
                run_case(conn, records, unique, warmup)  # warm up: connections, code paths
                run_case(conn, records, lambda i, b=plain: b, warmup)
                clock = server.cpu_clock
                results[f"{kind} miss"] = run_case(conn, records, unique, requests, clock)
                run_case(conn, records, lambda i, b=same: b, 1)  # store it
                results[f"{kind} hit"] = run_case(conn, records, lambda i, b=same: b, requests, clock)
                results[f"{kind} bypass"] = run_case(conn, records, lambda i, b=plain: b, requests, clock)
            conn.close()
    finally:
        upstream.stop()
    return results


def table(results: dict) -> str:
    """A Markdown table of ``bench`` results."""
    lines = ["| case | cache status | gateway p50 µs | p90 | p99 | mean | gateway CPU µs/req | client p50 µs |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for case, r in results.items():
        g = r["gateway_us"]
        lines.append(f"| {case} | {','.join(r['cache_status'])} | {g['p50']:.0f} | {g['p90']:.0f} | {g['p99']:.0f} "
                     f"| {g['mean']:.0f} | {r['gateway_cpu_us']:.0f} | {r['client_us_p50']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.bench_cache", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per case")
    parser.add_argument("--tokens", type=int, default=20, help="completion tokens (stream chunks) per answer")
    parser.add_argument("--pin", action="store_true", help="this process on CPU 0, the upstream on CPU 1")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    results = bench(args.requests, args.tokens, args.pin)
    print(table(results))
    for kind in ("json", "stream"):
        hit, miss = results[f"{kind} hit"]["gateway_us"]["p50"], results[f"{kind} miss"]["gateway_us"]["p50"]
        print(f"{kind}: a hit takes {hit:.0f} µs of gateway time, a miss {miss:.0f} µs ({miss / hit:.1f}×)")
    if args.out:
        Path(args.out).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
