"""What observability costs per request: ``python -m gateway.observability.bench``.

Starts ``llm-gateway serve`` (mock backend, telemetry off) once per setting and drives it with
non-streamed chat requests from this process; reports the gateway process's CPU time per
request (user + system, from ``/proc``) and the client-side throughput. Settings:

- ``off``: metrics and tracing disabled (the floor);
- ``metrics``: the default (``/metrics`` on, tracing off);
- ``trace-0``: metrics + tracing with ``sample_ratio: 0`` (ids and propagation only);
- ``trace``: metrics + every request traced and exported over OTLP/HTTP to a receiver here;
- ``trace+log``: as ``trace`` plus the JSON access line (to a file).

Rounds alternate the settings so a busy machine hurts them alike; the median is reported.
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

import aiohttp
from aiohttp import web

SETTINGS = {
    "off": "observability: {metrics: {enabled: false}}",
    "metrics": "",
    "trace-0": "observability: {tracing: {enabled: true, sample_ratio: 0, endpoint: '{otlp}'}}",
    "trace": "observability: {tracing: {enabled: true, endpoint: '{otlp}'}}",
    "trace+log": "observability: {tracing: {enabled: true, endpoint: '{otlp}'}, "
                 "logging: {format: json, access_log: true}}",
}
BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":8}'


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Receiver:
    """An OTLP/HTTP endpoint that accepts and discards spans (counts the exports)."""

    def __init__(self):
        from gateway.proxy.server import BackgroundServer

        self.exports = 0

        async def take(request: web.Request) -> web.Response:
            await request.read()
            self.exports += 1
            return web.Response(body=b"", content_type="application/x-protobuf")

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", take)
        self.server = BackgroundServer(app)


async def _drive(url: str, n: int, concurrency: int) -> float:
    """Send ``n`` requests with ``concurrency`` in flight; returns the wall seconds."""
    left = n
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker():
            nonlocal left
            while left > 0:
                left -= 1
                async with session.post(url, data=BODY, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    assert r.status == 200, r.status
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start


def _serve(config: Path, port: int, log) -> subprocess.Popen:
    from gateway.proxy.server import free_port  # noqa: F401 - imported for symmetry with callers

    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)],
                            stdout=log, stderr=log, env={**os.environ, "LLM_GATEWAY_TELEMETRY": "off"})
    import urllib.request
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the gateway did not start")


def main() -> None:
    from gateway.proxy.server import free_port

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settings", default=",".join(SETTINGS))
    args = ap.parse_args()
    names = args.settings.split(",")
    receiver = _Receiver()
    results: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    with receiver.server, tempfile.TemporaryDirectory() as tmp:
        otlp = f"{receiver.server.url}/v1/traces"
        for rnd in range(args.rounds):
            for name in names:
                config = Path(tmp) / f"{name}.yaml"
                config.write_text("backends: {mock: {type: mock, mock: {tokens: 8}}}\n"
                                  "models: {m: {targets: [{backend: mock}]}}\ntelemetry: {enabled: false}\n"
                                  + SETTINGS[name].replace("{otlp}", otlp) + "\n")
                port = free_port()
                with open(Path(tmp) / f"{name}.log", "ab") as log:
                    proc = _serve(config, port, log)
                    try:
                        url = f"http://127.0.0.1:{port}/v1/chat/completions"
                        asyncio.run(_drive(url, args.warmup, args.concurrency))
                        cpu0 = _cpu_s(proc.pid)
                        wall = asyncio.run(_drive(url, args.requests, args.concurrency))
                        time.sleep(1.2)  # let the batch processor export what this run produced
                        cpu = _cpu_s(proc.pid) - cpu0
                    finally:
                        proc.terminate()
                        proc.wait(30)
                results[name].append((cpu / args.requests * 1e6, args.requests / wall))
                print(f"round {rnd + 1} {name:10s} {cpu / args.requests * 1e6:7.1f} µs CPU/request "
                      f"{args.requests / wall:8.0f} req/s", flush=True)
    print(f"\n{'setting':10s} {'CPU µs/req (median)':>20s} {'vs off':>8s} {'req/s':>8s}")
    base = statistics.median(c for c, _ in results[names[0]])
    for name in names:
        cpu = statistics.median(c for c, _ in results[name])
        rps = statistics.median(r for _, r in results[name])
        print(f"{name:10s} {cpu:20.1f} {cpu - base:+8.1f} {rps:8.0f}")
    print(f"(OTLP exports received: {receiver.exports})")


if __name__ == "__main__":
    main()
