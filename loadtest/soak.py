"""The soak: a long closed-loop run against one target while its serving processes' RSS is
sampled, to show memory does not grow with the number of requests served. Against a gateway
with telemetry on it also samples the request log (``/admin/telemetry``: ``lag_s``,
``log_bytes``) and ends by waiting for the ingester and counting the rows (``/admin/query``)."""

from __future__ import annotations

import asyncio
import sys
import urllib.request
from time import perf_counter
from typing import Any

import orjson
import psutil

from loadtest.generator import Recorder, Step
from loadtest.httpclient import Target, make_engine
from loadtest.loops import closed_loop
from loadtest.procs import rss_bytes, split_tree
from loadtest.scenario import RequestFactory


def checkpoint_medians(samples: list[tuple[int, float, float]], checkpoints: list[int],
                       window: float = 0.05) -> dict[int, float]:
    """RSS at each checkpoint as the median of the samples within ±``window`` of its request
    count (one sample can catch a transient peak); checkpoints without such samples are left out."""
    out = {}
    for c in checkpoints:
        near = sorted(rss for n, _, rss in samples if abs(n - c) <= c * window)
        if near:
            out[c] = near[len(near) // 2]
    return out


def _admin(base: str, path: str, body: dict | None = None, timeout: float = 30.0) -> Any:
    """GET (or POST ``body``) an admin path of the gateway at ``base``; ``None`` when it fails."""
    data = orjson.dumps(body) if body is not None else None
    req = urllib.request.Request(base + path, data=data, method="POST" if data is not None or "flush" in path
                                 else "GET", headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return orjson.loads(resp.read())
    except (OSError, ValueError):
        return None


def _log_state(base: str) -> dict | None:
    t = _admin(base, "/admin/telemetry", timeout=5)
    if not t or not t.get("enabled", True):
        return None
    return {"lag_s": t.get("lag_s"), "log_bytes": t.get("log_bytes"), "written": t.get("written"),
            "lost": t.get("lost"), "rows": (t.get("ingester") or {}).get("rows")}


def telemetry_end(base: str, flush_timeout: float = 300.0) -> dict | None:
    """After the load: wait for the ingester (flush), then count the rows in the store."""
    t0 = perf_counter()
    flushed = _admin(base, f"/admin/telemetry/flush?timeout={flush_timeout:g}", timeout=flush_timeout + 10)
    if flushed is None:
        return None
    wait = round(perf_counter() - t0, 1)
    rows = _admin(base, "/admin/query", {"sql": "SELECT count() AS n FROM llm_requests", "format": "json"})
    count = None
    if isinstance(rows, dict) and rows.get("data"):
        count = int(rows["data"][0]["n"])
    return {"flushed": flushed.get("flushed"), "flush_wait_s": wait, "rows": count}


async def soak(url: str, scenario, pid: int, total: int, checkpoints: list[int], concurrency: int,
               progress: bool = True, engine: str = "raw", max_s: float = 240.0) -> dict:
    """Closed loop until ``total`` requests (or ``max_s`` seconds); RSS of ``pid``'s tree sampled
    every 0.5 s; at each checkpoint, the median of the samples within ±5% of it (checkpoints not
    reached in time are left out)."""
    proc = psutil.Process(pid)
    base = url.rsplit("/v1", 1)[0]
    samples: list[tuple[int, float, float]] = []   # (completed, seconds, serving RSS MiB)
    ingest_rss: list[tuple[int, float]] = []       # (completed, ingester RSS MiB)
    log_samples: list[dict] = []                   # /admin/telemetry every ~5 s
    at: dict[int, float] = {}
    target = Target.parse(url, scenario.endpoint)
    step = Step("closed", max_s, 0.0, concurrency=concurrency, max_requests=total)
    rec = Recorder()
    eng = make_engine(engine, target, concurrency)
    factory = RequestFactory(scenario)
    t0 = perf_counter()
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=total, desc=f"soak {url}", unit="req", leave=False, disable=None, file=sys.stderr)
        except ImportError:
            pass

    def serving_rss() -> float:
        serving, ingest = split_tree(proc)
        if ingest:
            ingest_rss.append((rec.completed, round(rss_bytes(ingest) / 2**20, 1)))
        return rss_bytes(serving) / 2**20

    async def log_sampler() -> None:
        while True:
            await asyncio.sleep(5.0)
            state = await asyncio.get_running_loop().run_in_executor(None, _log_state, base)
            if state is None:
                return
            log_samples.append({"requests": rec.completed, "s": round(perf_counter() - t0, 1), **state})

    async def sampler() -> None:
        pending = sorted(checkpoints)
        while True:
            await asyncio.sleep(0.5)
            n = rec.completed
            rss = serving_rss()
            samples.append((n, round(perf_counter() - t0, 2), round(rss, 1)))
            if bar is not None:
                bar.n = min(n, total)
                bar.refresh()
            while pending and n >= pending[0]:
                at[pending.pop(0)] = round(rss, 1)

    sampler_task = asyncio.ensure_future(sampler())
    log_task = asyncio.ensure_future(log_sampler())
    try:
        await closed_loop(eng, factory, step, rec, None)
    finally:
        sampler_task.cancel()
        log_task.cancel()
    rss = round(serving_rss(), 1)
    samples.append((rec.completed, round(perf_counter() - t0, 2), rss))
    for c in checkpoints:  # the last checkpoint is usually reached between samples
        if c not in at and rec.completed >= c:
            at[c] = rss
    at.update(checkpoint_medians(samples, [c for c in at]))
    await eng.close()
    if bar is not None:
        bar.close()
    wall = perf_counter() - t0
    if len(at) < 2 and samples:
        # The checkpoints did not fit in max_s: compare the sample nearest a third of the run
        # (past start-up growth) with the last one, and say so by their request counts.
        third = next((smp for smp in samples if smp[0] >= rec.completed / 3), samples[0])
        at = {third[0]: third[2], samples[-1][0]: samples[-1][2]}
    first, last = min(at, default=None), max(at, default=None)
    growth = (round((at[last] - at[first]) / at[first] * 100, 2) if first is not None and last != first
              else None)
    # Growth from 10% of the run's requests to its end (the 100k → 1M, scaled).
    tenth = next((smp for smp in samples if smp[0] >= rec.completed / 10), None)
    growth_10 = (round((samples[-1][2] - tenth[2]) / tenth[2] * 100, 2) if tenth and tenth[2] else None)
    end = await asyncio.get_running_loop().run_in_executor(None, telemetry_end, base) if log_samples else None
    lags = [x["lag_s"] for x in log_samples if x.get("lag_s") is not None]
    sizes = [x["log_bytes"] for x in log_samples if x.get("log_bytes") is not None]
    result = {"target_url": url, "scenario": scenario.name, "requests": rec.completed, "failed": rec.failed,
              "wall_s": round(wall, 1), "throughput_rps": round(rec.completed / wall, 1),
              "rss_mib_at": {str(k): v for k, v in sorted(at.items())}, "rss_growth_pct": growth,
              "rss_mib_at_10pct": tenth[2] if tenth else None, "requests_at_10pct": tenth[0] if tenth else None,
              "rss_growth_10_100_pct": growth_10,
              "ingester_rss_mib_max": max((r for _, r in ingest_rss), default=None),
              "log_lag_s_max": max(lags, default=None), "log_bytes_max": max(sizes, default=None),
              "telemetry_end": end, "log_samples": log_samples, "samples": samples}
    print(f"  soak: {rec.completed} requests in {wall:.0f}s, RSS at {result['rss_mib_at']} MiB, "
          f"growth {growth}%; 10%→100%: {growth_10}%; log lag max {result['log_lag_s_max']} s, "
          f"log bytes max {result['log_bytes_max']}; end {end}", file=sys.stderr, flush=True)
    return result
