"""The benchmark: direct vs bare proxy vs gateway (features off / on) [vs a comparison URL].

``python -m loadtest bench --pin`` reads ``loadtest/bench.yaml`` (the plan), starts the fake
upstream and every server target once, then runs each phase against each target in turn,
round after round with the target order rotated (interleaved, so the machine's drift hits
every target alike). With ``--pin`` the servers under test run on ``--gateway-cpus`` (default
CPU 0) and the generator plus the fake upstream on ``--load-cpus`` (default CPU 1).

Per phase and target it records throughput, latency percentiles (merged HDR histograms over
the rounds), added latency (minus the ``reference`` target's, percentile by percentile),
the server's CPU ms per request and RSS, the load side's CPU use (to show the generator was
not the bottleneck), then a latency-vs-offered-load sweep (PNG) and a soak (RSS growth
between request-count checkpoints). Results: ``OUT/bench.json``, ``OUT/results.md``,
``OUT/latency-vs-load.png``, ``OUT/logs/``.
"""


from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import orjson
import yaml

from loadtest.aggregate import aggregate
from loadtest.generator import Step, run_async, run_step
from loadtest.httpclient import Target
from loadtest.probes import LoadSideProbe, Probes
from loadtest.procs import (
    CoreProbe,
    ManagedProcess,
    ProcessProbe,
    free_port,
    ingester_pids,
    parse_cpus,
    pin_self,
    python_argv,
)
from loadtest.report import bench_table, step_line, verdicts
from loadtest.scenario import RequestFactory, load_scenario
from loadtest.soak import soak

HERE = Path(__file__).resolve().parent
DEFAULT_PLAN = HERE / "bench.yaml"


@dataclass
class BenchOptions:
    plan: str | None = None
    out_dir: Path = Path("bench-results")
    pin: bool = False
    gateway_cpus: str = "0"
    load_cpus: str = "1"
    compare_url: str | None = None
    compare_pid: int | None = None
    quick: bool = False
    rounds: int | None = None
    skip: set[str] = field(default_factory=set)
    targets: list[str] | None = None
    progress: bool = True
    engine: str = "raw"
    nice: int = 0


def load_plan(path: str | Path | None) -> dict[str, Any]:
    path = Path(path) if path else DEFAULT_PLAN
    plan = yaml.safe_load(path.read_text())
    plan["_dir"] = str(path.resolve().parent)
    for key in ("targets", "phases"):
        if key not in plan:
            raise ValueError(f"{path}: bench plan needs `{key}`")
    return plan


def _resolve(plan: dict, rel: str) -> str:
    p = Path(rel)
    return str(p if p.is_absolute() else Path(plan["_dir"]) / p)


def _scenario(plan: dict, name: str):
    candidate = Path(plan["_dir"]) / name
    return load_scenario(candidate if candidate.exists() else name)


class Bench:
    def __init__(self, opts: BenchOptions):
        self.opts = opts
        self.plan = load_plan(opts.plan)
        self.out = opts.out_dir
        self.logs = self.out / "logs"
        self.procs: dict[str, ManagedProcess] = {}
        self.urls: dict[str, str] = {}
        self.pids: dict[str, int | None] = {}
        self.upstream: ManagedProcess | None = None
        self.standins: list[ManagedProcess] = []
        self.gw_cpus = opts.gateway_cpus if opts.pin else None
        self.load_cpus = opts.load_cpus if opts.pin else None
        targets = dict(self.plan["targets"])
        if opts.compare_url:
            targets["compare"] = {"kind": "url", "url": opts.compare_url, "pid": opts.compare_pid}
        if opts.targets:
            unknown = set(opts.targets) - set(targets)
            if unknown:
                raise ValueError(f"unknown targets {sorted(unknown)} (plan has {sorted(targets)})")
            targets = {k: v for k, v in targets.items() if k in opts.targets or k == "compare"}
        self.targets = targets
        quick = self.plan.get("quick", {}) if opts.quick else {}
        self.scale = float(quick.get("duration_scale", 1.0))
        self.rounds = opts.rounds or int(quick.get("rounds", self.plan.get("rounds", 1)))
        self.quick = quick

    # --- processes ------------------------------------------------------------------------
    def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        up = self.plan.get("upstream", {})
        port = free_port()
        self.upstream = ManagedProcess(
            "fake-upstream",
            python_argv("-m", "loadtest", "fake-upstream", "--port", str(port),
                        "--ttft-ms", str(up.get("ttft_ms", 0)), "--itl-ms", str(up.get("itl_ms", 0)),
                        "--tokens", str(up.get("tokens", 20)), "--chunk-tokens", str(up.get("chunk_tokens", 1))),
            url=f"http://127.0.0.1:{port}", ready_url=f"http://127.0.0.1:{port}/health", cpus=self.load_cpus,
            log_path=self.logs / "fake-upstream.log", nice=self.opts.nice).start()
        self.upstream.wait_ready()
        upstream_url = self.upstream.url
        for name, spec in self.targets.items():
            kind = spec.get("kind")
            if kind == "direct":
                self.urls[name], self.pids[name] = upstream_url + "/v1", None
                continue
            if kind == "url":
                self.urls[name], self.pids[name] = spec["url"].rstrip("/"), spec.get("pid")
                continue
            port = free_port()
            cpus = spec.get("cpus", self.gw_cpus) if self.opts.pin else None
            if kind == "bare":
                argv = python_argv("-m", "loadtest", "bare-proxy", "--port", str(port), "--upstream", upstream_url)
                ready = f"http://127.0.0.1:{port}/health"
                env = None
            elif kind == "gateway":
                data_dir = (self.out / f"data-{name}").resolve()
                shutil.rmtree(data_dir, ignore_errors=True)
                data_dir.mkdir(parents=True)
                dsn = self._clickhouse(name, spec, data_dir)
                argv = python_argv("-m", "gateway", "serve", "--config", _resolve(self.plan, spec["config"]),
                                   "--port", str(port), *[str(a) for a in spec.get("args", [])])
                ready = f"http://127.0.0.1:{port}/readyz"
                env = {"LOADTEST_UPSTREAM_URL": upstream_url, "LOADTEST_DATA_DIR": str(data_dir),
                       **({"LOADTEST_CLICKHOUSE_DSN": dsn} if dsn else {}),
                       **{k: str(v) for k, v in (spec.get("env") or {}).items()}}
            else:
                raise ValueError(f"target {name}: unknown kind {kind!r}")
            proc = ManagedProcess(name, argv, url=f"http://127.0.0.1:{port}", ready_url=ready, cpus=cpus, env=env,
                                  log_path=self.logs / f"{name}.log", cwd=str(HERE.parent), nice=self.opts.nice)
            self.procs[name] = proc.start()
        for name, proc in self.procs.items():
            proc.wait_ready()
            self.urls[name], self.pids[name] = proc.url + "/v1", proc.pid
            self._place_ingester(name, proc.pid)

    def _clickhouse(self, name: str, spec: dict, data_dir: Path) -> str:
        """The DSN a gateway target's config gets in ``LOADTEST_CLICKHOUSE_DSN`` when the target
        says ``clickhouse: standin`` (e.g. configs/features-on-clickhouse.yaml): a ClickHouse HTTP
        stand-in in its own process, on the load cores. Otherwise empty (not set)."""
        if spec.get("clickhouse") != "standin":
            return ""
        port = free_port()
        standin = ManagedProcess(
            f"clickhouse-{name}", python_argv("-m", "loadtest.clickhouse_standin", "--dir", str(data_dir / "standin"),
                                              "--port", str(port)),
            url=f"http://127.0.0.1:{port}", ready_url=f"http://127.0.0.1:{port}/ping", cpus=self.load_cpus,
            log_path=self.logs / f"clickhouse-{name}.log", cwd=str(HERE.parent), nice=self.opts.nice).start()
        standin.wait_ready()
        self.standins.append(standin)
        return f"http://default:@127.0.0.1:{port}/bench"

    def _place_ingester(self, name: str, pid: int) -> None:
        """With --pin, ``serve``'s ingester process (which inherits the serving core) moves to
        the plan's ``ingester_cpus`` (default: the load cores), so the pinned core serves only."""
        if not self.opts.pin or self.targets.get(name, {}).get("kind") != "gateway":
            return
        cpus = parse_cpus(str(self.plan.get("ingester_cpus", self.load_cpus)))
        for ipid in ingester_pids(pid):
            try:
                os.sched_setaffinity(ipid, cpus or set(range(os.cpu_count() or 1)))
            except OSError:
                pass

    def telemetry_stats(self) -> dict[str, Any]:
        """Each gateway's ``/admin/telemetry`` after a flush: proof that features-on logged every
        request (records written to the request log, none lost, the ingester's rows). With
        ``--workers N`` the answer is one worker's. Targets without telemetry are left out."""
        out: dict[str, Any] = {}
        for name, proc in self.procs.items():
            if self.targets[name].get("kind") != "gateway":
                continue
            try:
                # no body: no form type
                req = urllib.request.Request(proc.url + "/admin/telemetry/flush", method="POST")
                urllib.request.urlopen(req, timeout=30).read()
                with urllib.request.urlopen(proc.url + "/admin/telemetry", timeout=10) as resp:
                    data = orjson.loads(resp.read())
            except (OSError, ValueError):
                continue
            if data.get("enabled"):
                out[name] = data
                ingester = data.get("ingester") or {}
                print(f"  {name} telemetry: {data.get('written')} records written, {data.get('lost')} lost, "
                      f"ingested: {data.get('ingested')}; ingester: {ingester.get('records')} records, "
                      f"store {ingester.get('store')}", file=sys.stderr, flush=True)
        return out

    def stop(self) -> None:
        for proc in [*self.procs.values(), *self.standins]:  # gateways before their ClickHouse stand-ins
            proc.stop()
        if self.upstream:
            self.upstream.stop()

    # --- running ----------------------------------------------------------------------------
    def _probes(self, target: str) -> Probes:
        pid = self.pids.get(target)
        server = ProcessProbe(pid) if pid else None
        load_pids = [os.getpid()] + ([self.upstream.pid] if self.upstream else [])
        ncores = len(parse_cpus(self.load_cpus) or range(os.cpu_count() or 1))
        server_cores = parse_cpus(self.targets[target].get("cpus", self.gw_cpus)) if self.opts.pin else None
        cores = CoreProbe(server_cores) if server_cores and server else None
        return Probes(server, LoadSideProbe(load_pids, ncores), cores)

    async def _step(self, target: str, scenario, step: Step, label: str) -> dict:
        t = Target.parse(self.urls[target], scenario.endpoint)
        result = await run_step(t, RequestFactory(scenario), step, engine=self.opts.engine,
                                probe=self._probes(target), progress=self.opts.progress, label=label)
        print(f"  {label:40} {step_line(result)}", file=sys.stderr, flush=True)
        return result

    def _dur(self, x: float) -> float:
        """Seconds from the plan, scaled down by --quick (never below 0.5 s when scaled)."""
        return max(0.5, float(x) * self.scale) if self.scale != 1.0 else float(x)

    async def _warm(self) -> None:
        scenario = _scenario(self.plan, "chat-json")
        for name in self.targets:
            step = Step("closed", self._dur(float(self.plan.get("warm_up_s", 1.0))), 0.1, concurrency=8)
            await self._step(name, scenario, step, f"warm-up {name}")

    async def phases(self) -> list[dict]:
        results: list[dict] = []
        names = list(self.targets)
        phases = [p for p in self.plan["phases"] if p["name"] not in self.opts.skip]
        for rnd in range(self.rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            print(f"round {rnd + 1}/{self.rounds} (order: {', '.join(order)})", file=sys.stderr, flush=True)
            for phase in phases:
                scenario = _scenario(self.plan, phase["scenario"])
                step = Step(phase["mode"], self._dur(phase.get("duration_s", 5)), self._dur(phase.get("warmup_s", 1)),
                            rate=float(phase.get("rate", 0)), concurrency=int(phase.get("concurrency", 32)))
                for name in order:
                    if phase.get("targets") and name not in phase["targets"]:
                        continue
                    res = await self._step(name, scenario, step, f"r{rnd + 1} {phase['name']} {name}")
                    results.append({"round": rnd + 1, "phase": phase["name"], "target": name, "result": res})
        return results

    async def sweep(self) -> list[dict]:
        sw = self.plan.get("sweep")
        if not sw or "sweep" in self.opts.skip:
            return []
        scenario = _scenario(self.plan, sw["scenario"])
        rates = self.quick.get("sweep_rates", sw["rates"])
        out = []
        for rate in rates:
            step = Step("open", self._dur(sw.get("duration_s", 3)), self._dur(sw.get("warmup_s", 0.5)),
                        rate=float(rate), drain_s=float(sw.get("drain_s", 5)))
            for name in self.targets:
                if sw.get("targets") and name not in sw["targets"]:
                    continue
                res = await self._step(name, scenario, step, f"sweep {rate:g}/s {name}")
                out.append({"phase": "sweep", "target": name, "result": res})
        return out

    async def soak(self) -> dict | None:
        sk = self.plan.get("soak")
        if not sk or "soak" in self.opts.skip or sk["target"] not in self.targets:
            return None
        name = sk["target"]
        pid = self.pids.get(name)
        if not pid:
            return None
        scenario = _scenario(self.plan, sk["scenario"])
        total = int(self.quick.get("soak_requests", sk["requests"]))
        checkpoints = [int(c) for c in self.quick.get("soak_checkpoints", sk["checkpoints"])]
        return await soak(self.urls[name], scenario, pid, total, checkpoints, int(sk.get("concurrency", 32)),
                          self.opts.progress, self.opts.engine, float(sk.get("max_s", 240)))


def _git_revision() -> str | None:
    """The commit the gateway was measured at (``+dirty`` when the tree had changes)."""
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty=+dirty"], cwd=HERE.parent,
                             capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_bench(opts: BenchOptions) -> int:
    bench = Bench(opts)
    pin_self(parse_cpus(bench.load_cpus), opts.nice)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    host = {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "python": sys.version.split()[0],
            "git": _git_revision(),
            "pinned": {"servers": bench.gw_cpus, "load": bench.load_cpus} if opts.pin else None,
            "nice": opts.nice}
    print(f"bench: {len(bench.targets)} targets, {bench.rounds} rounds, load average {os.getloadavg()[0]:.2f}",
          file=sys.stderr, flush=True)
    t0 = perf_counter()
    try:
        bench.start()

        async def main():
            await bench._warm()
            runs = await bench.phases()
            sweep = await bench.sweep()
            soak_result = await bench.soak()
            return runs, sweep, soak_result

        runs, sweep, soak_result = run_async(main())
        telemetry = bench.telemetry_stats()
    finally:
        bench.stop()
    host["loadavg_end"] = os.getloadavg()
    baseline = bench.plan.get("baseline", "bare-proxy")
    reference = bench.plan.get("reference", "direct")
    table = aggregate(runs, reference)
    checks = verdicts(table, soak_result, baseline=baseline, target="gateway-on")
    result = {"tool": "llm-gateway-bench", "started": started, "wall_s": round(perf_counter() - t0, 1),
              "host": host, "plan": {k: v for k, v in bench.plan.items() if not k.startswith("_")},
              "rounds": bench.rounds, "quick": opts.quick, "engine": opts.engine, "urls": bench.urls,
              "table": table, "verdicts": checks, "soak": soak_result, "telemetry": telemetry,
              "runs": runs, "sweep": sweep}
    bench.out.mkdir(parents=True, exist_ok=True)
    (bench.out / "bench.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    md = bench_table(table, baseline=baseline, soak=soak_result, checks=checks, host=host, rounds=bench.rounds)
    (bench.out / "results.md").write_text(md)
    print(md)
    if sweep:
        try:
            from loadtest.plot import plot_results
            series: dict[str, list] = {}
            for run in sweep:
                series.setdefault(run["target"], []).append(run["result"])
            plot_results(series, bench.out / "latency-vs-load.png",
                         title="latency vs offered load (open loop, chat JSON)")
        except ImportError:
            print("matplotlib is not installed: no PNG (pip install 'llm-gateway[bench]')", file=sys.stderr)
    print(f"results in {bench.out}/ (bench.json, results.md, latency-vs-load.png, logs/) "
          f"after {perf_counter() - t0:.0f}s", file=sys.stderr)
    return 0
