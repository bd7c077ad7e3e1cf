"""Benchmark: routing in front of two real vLLM servers (CPU build, tiny model).

``python -m loadtest.vllm_fleet [--requests 40] [--concurrency 2] [--preload 6] [--out FILE.json]``

Needs the vLLM venv of the real-vLLM tests (``bash tests/vllm/setup_venv.sh``). Two servers
start with ``--max-num-seqs 2`` so queues form; the gateway runs as ``python -m gateway serve``
(a process of its own, telemetry off).

Part 1, skewed load: server A gets ``--preload`` long completions straight from the benchmark,
over and over (2 running, the rest queued). For each strategy (``weighted``, ``least-busy``,
``vllm-load``) a fresh gateway serves ``--requests`` streamed chats at ``--concurrency``;
TTFT is measured by the client (request sent → first content delta), with the share of
requests each strategy sent to A. ``least-busy`` only sees the gateway's own in-flight count,
so it cannot see A's queue; ``vllm-load`` reads it from A's ``/metrics``.

Part 2, prefix cache: ``--prefixes`` long system prompts, each asked ``--per-prefix`` different
questions, in shuffled order, through ``vllm-load`` without and with ``prefix_affinity``; the
prefix-cache hit rate over both servers is Δ``vllm:prefix_cache_hits_total`` /
Δ``vllm:prefix_cache_queries_total`` (tokens). Each run uses fresh prompts, so neither finds
the other's entries in the cache.

On a 2-core machine both servers, the gateway and the client share the CPUs (load on A slows
B too), so the numbers are indicative of the direction and rough size of the effect only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from loadtest import vllm_server as vs

REPO = Path(__file__).resolve().parent.parent
WORDS = ("kettle toaster coffee machine warranty descale filter boil spout lid handle cord base steam "
         "temperature limescale grinder bean espresso milk froth carafe timer crumb tray slot browning").split()


def gateway_config(a_url: str, b_url: str, strategy: str, affinity: bool) -> str:
    return f"""
telemetry: {{enabled: false}}
backends:
  vllm-a: {{type: vllm, base_url: "{a_url}", vllm: {{scrape_interval_ms: 250, timeout_ms: 3000, down_after: 3}}}}
  vllm-b: {{type: vllm, base_url: "{b_url}", vllm: {{scrape_interval_ms: 250, timeout_ms: 3000, down_after: 3}}}}
models:
  tiny:
    strategy: {strategy}
    targets: [{{backend: vllm-a, model: {vs.SERVED_MODEL_NAME}}}, {{backend: vllm-b, model: {vs.SERVED_MODEL_NAME}}}]
routing:
  retry: {{attempts: 1}}
  seed: 1
  vllm_load: {{prefix_affinity: {{enabled: {str(affinity).lower()}, prefix_chars: 600}}}}
"""


class Gateway:
    """``python -m gateway serve`` on a free port with one config."""

    def __init__(self, workdir: Path, text: str, tag: str):
        self.path = workdir / f"gateway-{tag}.yaml"
        self.path.write_text(text)
        self.port = vs.free_port()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        self.proc = vs.ManagedProcess("gateway", [sys.executable, "-m", "gateway", "serve", "--config",
                                                  str(self.path), "--port", str(self.port)],
                                      workdir / f"gateway-{tag}.log", env=env, cwd=workdir)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.proc.start()
        self.proc.wait_ready(lambda: vs.http_get("127.0.0.1", self.port, "/readyz")[0] == 200, 60)
        deadline = time.monotonic() + 30  # both servers scraped
        while time.monotonic() < deadline:
            body = json.loads(vs.http_get("127.0.0.1", self.port, "/admin/vllm")[1])
            if all(b["snapshot"] is not None for b in body["backends"]) and len(body["backends"]) == 2:
                break
            time.sleep(0.2)
        return self

    def __exit__(self, *exc):
        self.proc.stop()


def metrics_of(server) -> dict:
    from gateway.vllm.metrics import parse_metrics

    snap = parse_metrics(vs.http_get(server.host, server.port, "/metrics")[1].decode(), 0.0)
    return {"running": snap.running, "waiting": snap.waiting, "hits": snap.prefix_hits or 0.0,
            "queries": snap.prefix_queries or 0.0}


async def run_requests(url: str, bodies: list[dict], concurrency: int) -> list[dict]:
    """Stream every body through the gateway, ``concurrency`` at a time; TTFT per request."""
    queue = list(enumerate(bodies))
    results: list[dict] = [None] * len(bodies)  # type: ignore[list-item]

    async def worker(client: httpx.AsyncClient):
        while queue:
            i, body = queue.pop(0)
            t0 = time.perf_counter()
            ttft = None
            async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
                backend = resp.headers.get("x-gateway-backend", "")
                async for line in resp.aiter_lines():
                    if ttft is None and line.startswith("data: {") and '"content":"' in line.replace(" ", ""):
                        ttft = time.perf_counter() - t0
            results[i] = {"status": resp.status_code, "backend": backend, "ttft_ms": (ttft or 0.0) * 1000,
                          "total_ms": (time.perf_counter() - t0) * 1000}

    async with httpx.AsyncClient(timeout=300) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return results


def summarize(results: list[dict]) -> dict:
    ttfts = sorted(r["ttft_ms"] for r in results if r["status"] == 200)
    q = statistics.quantiles(ttfts, n=20) if len(ttfts) >= 2 else ttfts * 19
    return {"requests": len(results), "errors": sum(r["status"] != 200 for r in results),
            "ttft_p50_ms": round(statistics.median(ttfts), 1), "ttft_p95_ms": round(q[18], 1),
            "ttft_mean_ms": round(statistics.fmean(ttfts), 1),
            "to_a": round(sum(r["backend"] == "vllm-a" for r in results) / len(results), 3)}


def chat(system: str, question: str, max_tokens: int = 16) -> dict:
    return {"model": "tiny", "stream": True, "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}


def long_prompt(rng: random.Random, chars: int = 1500) -> str:
    words = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS))
    return " ".join(words)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=40)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--preload", type=int, default=6, help="long requests kept on server A")
    p.add_argument("--prefixes", type=int, default=6)
    p.add_argument("--per-prefix", type=int, default=6)
    p.add_argument("--strategies", default="weighted,least-busy,vllm-load")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    python = vs.vllm_python()
    if not python.exists():
        print(f"vLLM venv python {python} not found: run bash tests/vllm/setup_venv.sh", file=sys.stderr)
        return 2
    model = vs.build_model(python)
    workdir = Path(tempfile.mkdtemp(prefix="vllm-fleet-bench-"))
    servers = [vs.VLLMServer(workdir / f"vllm-{n}.log", model=model, python=python,
                             extra_args=["--max-num-seqs", "2"]) for n in "ab"]
    report: dict = {"requests": args.requests, "concurrency": args.concurrency, "preload": args.preload,
                    "cpus": os.cpu_count(), "skewed": {}, "prefix_cache": {}}
    try:
        for s in servers:
            s.start()
        t0 = time.monotonic()
        for s in servers:
            s.wait()
        print(f"two vLLM servers ready in {time.monotonic() - t0:.0f}s (logs in {workdir})", flush=True)
        a, b = servers
        rng = random.Random(7)

        # -- part 1: skewed load -------------------------------------------------------------
        stop = threading.Event()

        def preload():
            with httpx.Client(timeout=600) as c:
                while not stop.is_set():
                    try:
                        c.post(f"{a.base_url}/completions", json={"model": vs.SERVED_MODEL_NAME, "prompt": "load",
                                                                 "max_tokens": 400, "ignore_eos": True})
                    except httpx.HTTPError:
                        time.sleep(0.2)

        threads = [threading.Thread(target=preload, daemon=True) for _ in range(args.preload)]
        for t in threads:
            t.start()
        while metrics_of(a)["waiting"] < max(1, args.preload - 3):
            time.sleep(0.2)
        for strategy in args.strategies.split(","):
            bodies = [chat(long_prompt(rng, 300), f"question {i}") for i in range(args.requests)]
            with Gateway(workdir, gateway_config(a.base_url, b.base_url, strategy, False), strategy) as gw:
                before = metrics_of(a)
                results = asyncio.run(run_requests(gw.url, bodies, args.concurrency))
            row = summarize(results)
            row["a_waiting_at_start"] = before["waiting"]
            report["skewed"][strategy] = row
            print(f"skewed load  {strategy:<11} TTFT p50 {row['ttft_p50_ms']:>7.1f} ms"
                  f"  p95 {row['ttft_p95_ms']:>7.1f} ms  to A {row['to_a']:.0%}  errors {row['errors']}", flush=True)
        stop.set()
        for t in threads:
            t.join(600)
        while any(metrics_of(s)["running"] or metrics_of(s)["waiting"] for s in servers):
            time.sleep(0.2)

        # -- part 2: prefix cache ------------------------------------------------------------
        for affinity in (False, True):
            prompts = [long_prompt(rng) for _ in range(args.prefixes)]
            bodies = [chat(sp, f"question {j}: {rng.choice(WORDS)}?") for sp in prompts for j in range(args.per_prefix)]
            rng.shuffle(bodies)
            tag = "affinity" if affinity else "no-affinity"
            with Gateway(workdir, gateway_config(a.base_url, b.base_url, "vllm-load", affinity), tag) as gw:
                before = [metrics_of(s) for s in servers]
                results = asyncio.run(run_requests(gw.url, bodies, args.concurrency))
                time.sleep(0.5)
                after = [metrics_of(s) for s in servers]
            hits = sum(x["hits"] - y["hits"] for x, y in zip(after, before))
            queries = sum(x["queries"] - y["queries"] for x, y in zip(after, before))
            row = summarize(results)
            row["prefix_hit_rate"] = round(hits / queries, 4) if queries else None
            row["servers_per_prefix"] = round(statistics.fmean(
                len({r["backend"] for r, body in zip(results, bodies) if body["messages"][0]["content"] == sp})
                for sp in prompts), 2)
            report["prefix_cache"][tag] = row
            print(f"prefix cache {tag:<11} hit rate {row['prefix_hit_rate']:.1%}  servers per prefix "
                  f"{row['servers_per_prefix']}  TTFT p50 {row['ttft_p50_ms']:.1f} ms p95 {row['ttft_p95_ms']:.1f} ms",
                  flush=True)
    finally:
        for s in servers:
            s.stop()
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
