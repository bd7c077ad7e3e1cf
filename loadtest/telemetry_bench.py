"""Telemetry cost: the ``emit`` micro-benchmark and gateway throughput with logging on vs off.

``python -m loadtest.telemetry_bench emit`` times ``RequestLog.emit`` (the only telemetry
work of the serving process: encode the request's facts, append them to the request log) and
the ingester's cost of turning a record into its row (decode, build, encode).

``python -m loadtest.telemetry_bench throughput`` starts ``llm-gateway serve`` with the
in-process mock backend (TTFT 0) pinned to one core, drives it from another core with a
closed-loop aiohttp client (fixed concurrency, JSON and streamed chat completions), and
alternates rounds with telemetry on (embedded chDB, every row written) and off
(``LLM_GATEWAY_TELEMETRY=off``). It reports requests/s and the gateway's CPU time per request
(all its threads, chDB's included) per mode, and checks that every request became a row.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """
backends:
  mock:
    type: mock
    mock: {ttft_ms: 0, itl_ms: 0, tokens: 16, chunk_tokens: 4}
models:
  mock-gpt: {targets: [{backend: mock}]}
telemetry:
  data_dir: "%(data_dir)s"
%(store)s
"""


# --- emit ------------------------------------------------------------------------------------
def bench_emit(n: int = 200_000) -> dict:
    """µs per ``emit`` call (mean over ``n`` calls, and p50/p99 of 1,000-call slices) into a real
    request log (``fsync: interval``) in a temporary folder, plus the ingester's µs per record
    (decode + build + encode) for a typical streamed request."""
    from gateway.config.telemetry import LogSettings, TelemetrySettings
    from gateway.core.context import RequestContext, Usage
    from gateway.core.pricing import PriceTable
    from gateway.core.tokens import TokenCounter
    from gateway.telemetry.facts import decode, encode_request
    from gateway.telemetry.record import RowBuilder, encode_rows
    from gateway.telemetry.request_log import RequestLog

    def ctx(i: int) -> RequestContext:
        return RequestContext(
            request_id=f"0f8fad5b-d9cb-469f-a165-{i:012d}", endpoint="chat/completions", t_start=1.0,
            ts_start=time.time(), body={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
                                        "temperature": 0.2, "stream": True},
            model_requested="gpt-4o", stream=True, backend="openai", provider="openai", upstream_model="gpt-4o",
            model_served="gpt-4o-2024-08-06", attempts=1, status_code=200, finish_reason="stop",
            usage=Usage(prompt_tokens=12, completion_tokens=40, total_tokens=52), t_upstream_start=1.001,
            t_first_token=1.05, t_end=1.3, chunk_times=[1.05 + 0.006 * k for k in range(40)],
            headers={"User-Agent": "bench", "Authorization": "Bearer sk-bench"})

    tmp = tempfile.mkdtemp(prefix="emit-bench-")
    settings = TelemetrySettings(log=LogSettings(max_bytes=64 << 30))
    sink = RequestLog(Path(tmp) / "log", settings)
    sink.open()
    items = [ctx(i) for i in range(n)]
    emit = sink.emit
    slices = []
    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        s0 = time.perf_counter()
        for item in items[start:start + 1000]:
            emit(item)
        slices.append((time.perf_counter() - s0) / 1000 * 1e6)
    total = time.perf_counter() - t0
    sink.close()
    slices.sort()
    builder = RowBuilder(config_hash="bench", instance="bench", prices=PriceTable(), tokens=TokenCounter())
    payloads = [encode_request(c, keep_text=False) for c in items[:20_000]]
    t1 = time.perf_counter()
    rows = [builder.request_row(decode(p)) for p in payloads]
    build_us = (time.perf_counter() - t1) / 20_000 * 1e6
    t2 = time.perf_counter()
    for k in range(0, 20_000, 1000):
        encode_rows(rows[k:k + 1000])
    encode_us = (time.perf_counter() - t2) / 20_000 * 1e6
    return {"emit_mean_us": total / n * 1e6, "emit_p50_us": slices[len(slices) // 2],
            "emit_p99_us": slices[int(len(slices) * 0.99)], "row_decode_build_us": build_us, "row_encode_us": encode_us}


# --- throughput ------------------------------------------------------------------------------
def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its threads (clock ticks → seconds)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(url: str, seconds: float, concurrency: int, stream_every: int) -> int:
    import aiohttp

    done = 0
    stop = time.monotonic() + seconds
    body_json = b'{"model":"mock-gpt","messages":[{"role":"user","content":"hello there"}]}'
    body_stream = b'{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"hello there"}]}'
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as session:
        async def worker(k: int) -> None:
            nonlocal done
            i = k
            while time.monotonic() < stop:
                body = body_stream if stream_every and i % stream_every == 0 else body_json
                async with session.post(url + "/v1/chat/completions", data=body,
                                        headers={"Content-Type": "application/json"}) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}")
                done += 1
                i += 1

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return done


def _serve(port: int, data_dir: str, telemetry: bool, gateway_cpu: int, dsn: str | None = None) -> subprocess.Popen:
    cfg = Path(data_dir) / "bench.yaml"
    store = f'  clickhouse: {{dsn: "{dsn}"}}' if dsn else ""
    cfg.write_text(CONFIG % {"data_dir": data_dir, "store": store})
    env = dict(os.environ, LLM_GATEWAY_TELEMETRY="on" if telemetry else "off", TZ="UTC")
    cmd = ["taskset", "-c", str(gateway_cpu), sys.executable, "-m", "gateway", "--log-level", "WARNING", "serve",
           "--config", str(cfg), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import urllib.request
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("gateway did not start")


def _admin(url: str, path: str, post: bool = False) -> dict:
    import json
    import urllib.request
    req = urllib.request.Request(url + path, method="POST" if post else "GET")  # no body: no form type
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def _standin(cpu: int) -> tuple[subprocess.Popen, str]:
    """The ClickHouse HTTP stand-in (``loadtest.clickhouse_standin``) in its own process."""
    from gateway.proxy.server import free_port

    port = free_port()
    data = tempfile.mkdtemp(prefix="tbench-store-")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(["nice", "-n", "19", "taskset", "-c", str(cpu),
                             sys.executable, "-m", "loadtest.clickhouse_standin", "--dir", data, "--port", str(port)],
                            cwd=repo, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(repo)))
    import urllib.request
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1):
                return proc, f"http://default@127.0.0.1:{port}/bench"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("stand-in did not start")


def bench_throughput(rounds: int = 3, seconds: float = 10.0, concurrency: int = 32, stream_every: int = 4,
                     gateway_cpu: int = 0, client_cpu: int = 1, store: str = "chdb") -> dict:
    """Interleaved on/off rounds; returns per-mode requests/s and CPU ms per request.

    ``store``: ``chdb`` (embedded, its engine's CPU counts as the gateway's) or ``http`` (a
    ClickHouse HTTP stand-in process on the client's core, as a server would be elsewhere).
    """
    from gateway.proxy.server import free_port

    os.sched_setaffinity(0, {client_cpu})
    standin, dsn = _standin(client_cpu) if store == "http" else (None, None)
    results: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
    rows_ok = True
    for r in range(rounds):
        for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):
            data_dir = tempfile.mkdtemp(prefix=f"tbench-{mode}-")
            port = free_port()
            proc = _serve(port, data_dir, mode == "on", gateway_cpu, dsn)
            url = f"http://127.0.0.1:{port}"
            try:
                asyncio.run(_drive(url, 1.0, concurrency, stream_every))  # warm up
                if mode == "on":
                    _admin(url, "/admin/telemetry/flush", post=True)
                cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
                n = asyncio.run(_drive(url, seconds, concurrency, stream_every))
                wall, cpu = time.monotonic() - t0, _cpu_seconds(proc.pid) - cpu0
                if mode == "on":
                    stats = _admin(url, "/admin/telemetry/flush?timeout=60", post=True)
                    rows_ok &= stats["written"] == stats["emitted"] and stats["dropped"] == 0
                    cpu = _cpu_seconds(proc.pid) - cpu0  # the writer's last batch counts too
                results[mode].append((n / wall, cpu / n * 1000))
                print(f"round {r + 1} {mode:3}: {n / wall:8.0f} req/s, {cpu / n * 1000:.3f} ms CPU/request",
                      flush=True)
            finally:
                proc.terminate()
                proc.wait(30)
    if standin is not None:
        standin.terminate()
        standin.wait(10)
    out = {}
    for mode, vals in results.items():
        out[mode] = {"rps": statistics.median(v[0] for v in vals), "cpu_ms": statistics.median(v[1] for v in vals)}
    out["rps_ratio_on_off"] = out["on"]["rps"] / out["off"]["rps"]
    out["cpu_ratio_on_off"] = out["on"]["cpu_ms"] / out["off"]["cpu_ms"]
    out["every_request_a_row"] = rows_ok
    return out


def main() -> None:
    """``python -m loadtest.telemetry_bench {emit,throughput}``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("emit", help="emit() micro-benchmark")
    e.add_argument("-n", type=int, default=200_000)
    t = sub.add_parser("throughput", help="gateway req/s with telemetry on vs off")
    t.add_argument("--rounds", type=int, default=3)
    t.add_argument("--seconds", type=float, default=10.0)
    t.add_argument("--concurrency", type=int, default=32)
    t.add_argument("--stream-every", type=int, default=4, help="every Nth request streams (0: none)")
    t.add_argument("--gateway-cpu", type=int, default=0)
    t.add_argument("--client-cpu", type=int, default=1)
    t.add_argument("--store", choices=["chdb", "http"], default="chdb",
                   help="embedded chDB, or a ClickHouse HTTP stand-in in another process")
    args = parser.parse_args()
    if args.cmd == "emit":
        res = bench_emit(args.n)
        print(f"emit: mean {res['emit_mean_us']:.3f} µs, p50 {res['emit_p50_us']:.3f} µs, "
              f"p99 {res['emit_p99_us']:.3f} µs (per call, 1,000-call slices)")
        print(f"ingester (another process): decode + row build {res['row_decode_build_us']:.1f} µs, "
              f"JSON encode {res['row_encode_us']:.2f} µs per row")
    else:
        res = bench_throughput(args.rounds, args.seconds, args.concurrency, args.stream_every,
                               args.gateway_cpu, args.client_cpu, args.store)
        print(f"telemetry off: {res['off']['rps']:.0f} req/s, {res['off']['cpu_ms']:.3f} ms CPU/request")
        print(f"telemetry on:  {res['on']['rps']:.0f} req/s, {res['on']['cpu_ms']:.3f} ms CPU/request")
        print(f"on/off: throughput {res['rps_ratio_on_off']:.3f}, CPU per request {res['cpu_ratio_on_off']:.3f}; "
              f"every request a row: {res['every_request_a_row']}")


if __name__ == "__main__":
    main()
