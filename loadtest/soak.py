"""The soak: a long closed-loop run against one target while its process tree's RSS is
sampled, to show memory does not grow with the number of requests served."""

from __future__ import annotations

import asyncio
import sys
from time import perf_counter

import psutil

from loadtest.generator import Recorder, Step
from loadtest.httpclient import Target, make_engine
from loadtest.loops import closed_loop
from loadtest.procs import tree_rss_bytes
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


async def soak(url: str, scenario, pid: int, total: int, checkpoints: list[int], concurrency: int,
               progress: bool = True, engine: str = "raw", max_s: float = 240.0) -> dict:
    """Closed loop until ``total`` requests (or ``max_s`` seconds); RSS of ``pid``'s tree sampled
    every 0.5 s; at each checkpoint, the median of the samples within ±5% of it (checkpoints not
    reached in time are left out)."""
    proc = psutil.Process(pid)
    samples: list[tuple[int, float, float]] = []   # (completed, seconds, rss MiB)
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

    async def sampler() -> None:
        pending = sorted(checkpoints)
        while True:
            await asyncio.sleep(0.5)
            n = rec.completed
            rss = tree_rss_bytes(proc) / 2**20
            samples.append((n, round(perf_counter() - t0, 2), round(rss, 1)))
            if bar is not None:
                bar.n = min(n, total)
                bar.refresh()
            while pending and n >= pending[0]:
                at[pending.pop(0)] = round(rss, 1)

    sampler_task = asyncio.ensure_future(sampler())
    try:
        await closed_loop(eng, factory, step, rec, None)
    finally:
        sampler_task.cancel()
    rss = round(tree_rss_bytes(proc) / 2**20, 1)
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
    result = {"target_url": url, "scenario": scenario.name, "requests": rec.completed, "failed": rec.failed,
              "wall_s": round(wall, 1), "throughput_rps": round(rec.completed / wall, 1),
              "rss_mib_at": {str(k): v for k, v in sorted(at.items())}, "rss_growth_pct": growth,
              "samples": samples}
    print(f"  soak: {rec.completed} requests in {wall:.0f}s, RSS at {result['rss_mib_at']} MiB, "
          f"growth {growth}%", file=sys.stderr, flush=True)
    return result
