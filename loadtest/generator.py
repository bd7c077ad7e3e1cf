"""Closed-loop and open-loop load runs, recorded into HDR histograms.

A step = ``warmup_s`` unmeasured seconds, then ``duration_s`` measured seconds, run closed
loop (``concurrency`` workers) or open loop (Poisson arrivals at ``rate``; see ``loops`` for
how latency is measured without coordinated omission). A ``probe`` (``start()`` /
``stop() -> dict``) is called exactly at the window's edges: the bench uses it to read the
server's CPU time and RSS over the window. The step's records and result: ``recording``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from loadtest.httpclient import Target, make_engine
from loadtest.loops import Progress, closed_loop, open_loop
from loadtest.recording import Probe, Recorder, Step, step_result
from loadtest.scenario import RequestFactory, Scenario


async def run_step(target: Target, factory: RequestFactory, step: Step, *, engine: str = "raw",
                   probe: Probe | None = None, progress: bool = True, label: str = "",
                   seed: int = 1) -> dict[str, Any]:
    """Run one step against ``target`` and return its result dict (see ``step_result``)."""
    rec = Recorder()
    eng = make_engine(engine, target, step.max_connections if step.mode == "open" else step.concurrency)
    what = f"{step.rate:g} req/s" if step.mode == "open" else f"c={step.concurrency}"
    bar = Progress(f"{label or target.url} {step.mode} {what}", step.warmup_s + step.duration_s, rec, progress)
    bar.start()
    try:
        if step.mode == "closed":
            meta = await closed_loop(eng, factory, step, rec, probe)
        else:
            meta = await open_loop(eng, factory, step, rec, probe, seed)
    finally:
        bar.close()
        await eng.close()
    return step_result(step, rec, meta, engine)


def steps_for(scenario: Scenario) -> list[Step]:
    """The steps a scenario describes: one closed step, or one open step per rate."""
    if scenario.mode == "closed":
        return [Step("closed", scenario.duration_s, scenario.warmup_s, concurrency=scenario.concurrency)]
    return [Step("open", scenario.duration_s, scenario.warmup_s, rate=float(r)) for r in scenario.rates]


def run_scenario(url: str, scenario: Scenario, *, engine: str = "raw", probe: Probe | None = None,
                 progress: bool = True, api_key: str = "sk-loadtest", steps: list[Step] | None = None) -> dict:
    """Run every step of ``scenario`` against ``url`` (``http://HOST:PORT/v1``) on uvloop."""
    target = Target.parse(url, scenario.endpoint, api_key)
    factory = RequestFactory(scenario)
    results = []

    async def main() -> None:
        for i, step in enumerate(steps or steps_for(scenario)):
            results.append(await run_step(target, factory, step, engine=engine, probe=probe,
                                          progress=progress, label=scenario.name, seed=scenario.seed + i))

    run_async(main())
    return {"tool": "llm-gateway-bench", "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "target": {"url": url, "endpoint": scenario.endpoint}, "scenario": scenario.to_dict(),
            "steps": results}


def run_async(coro):
    """Run ``coro`` on a fresh uvloop event loop (asyncio's if uvloop is missing)."""
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


__all__ = ["Probe", "Recorder", "Step", "run_async", "run_scenario", "run_step", "step_result", "steps_for"]
