"""``python -m loadtest`` / ``llm-gateway-bench``: the load test command line.

Subcommands:

- ``run``: drive one URL with a scenario (open or closed loop); JSON results, optional PNG.
- ``bench``: the interleaved benchmark (direct, bare proxy, gateway features off/on, optional
  comparison URL) from a plan YAML; prints the table, writes JSON, Markdown and PNG.
- ``fake-upstream``: the fast fake OpenAI upstream.
- ``bare-proxy``: the reference bare aiohttp proxy.
- ``plot``: a PNG of latency percentiles against offered load from result JSON files.
- ``profile``: py-spy the gateway under load and list its hot spots.
- ``semantic-threshold``: semantic cache hit / false-hit rate against the distance threshold,
  on the shipped paraphrase set, through a real embedding endpoint (and the mock's, for contrast).
- ``semantic-lookup``: semantic cache look-up latency at 10k / 100k entries, embedded and over HTTP.
- ``semantic-e2e``: the semantic cache end to end (a gateway, a real embeddings model, the pairs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _write_json(path: str | None, data) -> None:
    blob = orjson.dumps(data, option=orjson.OPT_INDENT_2)
    if path in (None, "-"):
        sys.stdout.write(blob.decode() + "\n")
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(blob)


def _cmd_run(args: argparse.Namespace) -> int:
    from loadtest.generator import run_scenario
    from loadtest.procs import ProcessProbe, parse_cpus, pin_self
    from loadtest.report import step_line
    from loadtest.scenario import Scenario, ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.scenario) if args.scenario else Scenario(name="cli")
        scenario = scenario.with_overrides(
            mode=args.mode, rates=_floats(args.rate) if args.rate else None, concurrency=args.concurrency,
            duration_s=args.duration, warmup_s=args.warmup, stream_ratio=args.stream_ratio,
            models={m: 1.0 for m in args.model} if args.model else None)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pin_self(parse_cpus(args.cpus))
    probe = ProcessProbe(args.pid) if args.pid else None
    result = run_scenario(args.url, scenario, engine=args.engine, probe=probe, progress=not args.no_progress,
                          api_key=args.api_key)
    for step in result["steps"]:
        print(step_line(step), file=sys.stderr)
    _write_json(args.json, result)
    if args.plot:
        from loadtest.plot import plot_results
        plot_results({scenario.name: result["steps"]}, args.plot, title=f"{args.url} — {scenario.name}")
    bad = sum(s["requests"] - s["ok"] for s in result["steps"])
    return 1 if args.fail_on_error and bad else 0


def _cmd_fake(args: argparse.Namespace) -> int:
    from loadtest.fake_upstream import FakeSettings, serve

    serve(args.host, args.port, FakeSettings(args.ttft_ms, args.itl_ms, args.tokens, args.chunk_tokens))
    return 0


def _cmd_bare(args: argparse.Namespace) -> int:
    from loadtest.bare_proxy import serve

    serve(args.host, args.port, args.upstream)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from loadtest.bench import BenchOptions, run_bench

    opts = BenchOptions(plan=args.plan, out_dir=Path(args.out), pin=args.pin, gateway_cpus=args.gateway_cpus,
                        load_cpus=args.load_cpus, compare_url=args.compare_url, compare_pid=args.compare_pid,
                        quick=args.quick, rounds=args.rounds, skip=set(args.skip or ()),
                        targets=args.targets.split(",") if args.targets else None,
                        progress=not args.no_progress, engine=args.engine, nice=args.nice)
    return run_bench(opts)


def _cmd_plot(args: argparse.Namespace) -> int:
    from loadtest.plot import plot_results

    series = {}
    for path in args.results:
        data = orjson.loads(Path(path).read_bytes())
        series[Path(path).stem] = data["steps"]
    plot_results(series, args.out)
    print(args.out)
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from loadtest.hotspots import ProfileOptions, run_profile

    return run_profile(ProfileOptions(config=args.config, seconds=args.seconds, stream=args.stream,
                                      out_dir=Path(args.out), gateway_cpus=args.gateway_cpus,
                                      load_cpus=args.load_cpus, top=args.top, concurrency=args.concurrency,
                                      all_threads=args.all_threads, bare=args.bare))


def _cmd_semantic_threshold(args: argparse.Namespace) -> int:
    from loadtest.semantic_pairs import measure, measure_mock, table

    results = {}
    if args.url:
        results[args.model] = measure(args.url, args.model, api_key=args.api_key, max_false_hit=args.max_false_hit)
    if args.mock:
        results["mock"] = measure_mock(args.dims, max_false_hit=args.max_false_hit)
    if not results:
        print("error: give --url (and --model) and/or --mock", file=sys.stderr)
        return 2
    print(table(results))
    for name, r in results.items():
        at = r["at_recommended"]
        if at is None:
            print(f"{name}: no threshold keeps the false-hit rate at or below {r['max_false_hit']:.0%}")
        else:
            print(f"{name}: recommended max_distance {r['recommended']:.2f} (false hits <= {r['max_false_hit']:.0%}): "
                  f"hit rate {at['hit_rate']:.1%}, false-hit rate {at['false_hit_rate']:.1%}")
    if args.json:
        _write_json(args.json, results)
    return 0


def _cmd_semantic_lookup(args: argparse.Namespace) -> int:
    from loadtest.semantic_lookup import bench, table

    results = bench([int(x) for x in args.sizes.split(",")], args.queries, args.main_share, args.keep, args.family)
    print(table(results))
    print(f"load average before {results['load_before'][0]:.2f}, after {results['load_after'][0]:.2f}")
    if args.json:
        _write_json(args.json, results)
    return 0


def _cmd_semantic_e2e(args: argparse.Namespace) -> int:
    from loadtest.semantic_e2e import run

    result = run(args.url, args.model, args.max_distance, args.lookup_timeout, args.limit)
    for kind, label in (("same", "same-meaning (hit rate)"), ("different", "different-meaning (false-hit rate)")):
        r = result[kind]
        print(f"{label}: {r['semantic_hit_rate']:.1%} semantic_hit of {r['pairs']} pairs; statuses {r['statuses']}; "
              f"ms {r['ms']}")
    print(f"counters: {result['counters']}")
    if args.json:
        _write_json(args.json, result)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llm-gateway-bench", description="Load test and benchmark llm-gateway.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="drive one URL with a scenario")
    r.add_argument("--url", required=True, help="base URL with the API prefix, e.g. http://127.0.0.1:8080/v1")
    r.add_argument("--scenario", help="scenario YAML path or name in loadtest/scenarios (default: built-in)")
    r.add_argument("--mode", choices=("open", "closed"))
    r.add_argument("--rate", help="open loop: requests/s, comma-separated steps (e.g. 100,300,1000)")
    r.add_argument("--concurrency", type=int, help="closed loop: requests in flight")
    r.add_argument("--duration", type=float, help="measured seconds per step")
    r.add_argument("--warmup", type=float, help="unmeasured seconds before each step")
    r.add_argument("--stream-ratio", type=float, help="share of streamed requests (0..1)")
    r.add_argument("--model", action="append", help="model name (repeatable; equal weights)")
    r.add_argument("--api-key", default="sk-loadtest")
    r.add_argument("--engine", choices=("raw", "aiohttp"), default="raw",
                   help="HTTP client: raw asyncio protocol (fast, default) or aiohttp")
    r.add_argument("--pid", type=int, help="server PID: report its CPU ms per request and RSS")
    r.add_argument("--cpus", help="pin the generator to these CPUs (e.g. 1)")
    r.add_argument("--json", default="-", help="write results here (default: stdout)")
    r.add_argument("--plot", help="write a PNG of latency percentiles against offered load")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--fail-on-error", action="store_true", help="exit 1 if any request failed")
    r.set_defaults(func=_cmd_run)

    b = sub.add_parser("bench", help="interleaved benchmark: direct, bare proxy, gateway off/on")
    b.add_argument("--plan", default=None, help="bench plan YAML (default: loadtest/bench.yaml)")
    b.add_argument("--out", default="bench-results", help="output folder (JSON, Markdown table, PNG, logs)")
    b.add_argument("--pin", action="store_true", help="pin servers and generator to separate cores")
    b.add_argument("--gateway-cpus", default="0", help="CPUs for the proxies under test (with --pin)")
    b.add_argument("--load-cpus", default="1", help="CPUs for the generator and fake upstream (with --pin)")
    b.add_argument("--compare-url", help="an extra target, e.g. a LiteLLM proxy you run (base URL with /v1)")
    b.add_argument("--compare-pid", type=int, help="its PID, to measure its CPU and RSS")
    b.add_argument("--targets", help="comma-separated subset of targets to run")
    b.add_argument("--skip", action="append", help="skip a phase by name (repeatable; 'soak', 'sweep', …)")
    b.add_argument("--rounds", type=int, help="override the plan's rounds")
    b.add_argument("--quick", action="store_true", help="seconds-long phases, small soak (a smoke test)")
    b.add_argument("--engine", choices=("raw", "aiohttp"), default="raw")
    b.add_argument("--nice", type=int, default=0,
                   help="nice value for every benchmark process (e.g. -10 on a shared machine; needs root)")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=_cmd_bench)

    f = sub.add_parser("fake-upstream", help="serve the fast fake OpenAI upstream")
    f.add_argument("--host", default="127.0.0.1")
    f.add_argument("--port", type=int, default=9100)
    f.add_argument("--ttft-ms", type=float, default=0.0)
    f.add_argument("--itl-ms", type=float, default=0.0)
    f.add_argument("--tokens", type=int, default=20, help="tokens when the request has no max_tokens")
    f.add_argument("--chunk-tokens", type=int, default=1)
    f.set_defaults(func=_cmd_fake)

    x = sub.add_parser("bare-proxy", help="serve the reference bare aiohttp proxy")
    x.add_argument("--host", default="127.0.0.1")
    x.add_argument("--port", type=int, default=9200)
    x.add_argument("--upstream", required=True, help="http://HOST:PORT of the upstream")
    x.set_defaults(func=_cmd_bare)

    pl = sub.add_parser("plot", help="PNG of latency percentiles against offered load")
    pl.add_argument("results", nargs="+", help="result JSON files from `run`")
    pl.add_argument("--out", default="latency.png")
    pl.set_defaults(func=_cmd_plot)

    pr = sub.add_parser("profile", help="py-spy the gateway under closed-loop load; list hot spots")
    pr.add_argument("--config", default=None, help="gateway config (default: loadtest/configs/features-on.yaml)")
    pr.add_argument("--seconds", type=float, default=15.0)
    pr.add_argument("--stream", action="store_true", help="streamed requests instead of JSON")
    pr.add_argument("--concurrency", type=int, default=32)
    pr.add_argument("--out", default="bench-results/profile")
    pr.add_argument("--gateway-cpus", default="0")
    pr.add_argument("--load-cpus", default="1")
    pr.add_argument("--top", type=int, default=25)
    pr.add_argument("--all-threads", action="store_true",
                    help="sample every running thread (e.g. the telemetry writer), not only the GIL holder")
    pr.add_argument("--bare", action="store_true",
                    help="profile the bare proxy (loadtest/bare_proxy.py) instead, to compare with the gateway")
    pr.set_defaults(func=_cmd_profile)

    st = sub.add_parser("semantic-threshold", help="semantic cache hit / false-hit rate against the threshold")
    st.add_argument("--url", help="OpenAI-compatible base URL serving /embeddings (e.g. vLLM: http://127.0.0.1:9400/v1)")
    st.add_argument("--model", default="all-MiniLM-L6-v2", help="embedding model name at --url")
    st.add_argument("--api-key", default="sk-bench")
    st.add_argument("--mock", action="store_true", help="also the mock backend's embeddings, for contrast")
    st.add_argument("--dims", type=int, default=384, help="dimensions asked of the mock")
    st.add_argument("--max-false-hit", type=float, default=0.05,
                    help="the recommended threshold keeps the false-hit rate at or below this (default 0.05)")
    st.add_argument("--json", help="also write the full results (distributions, closest pairs) here")
    st.set_defaults(func=_cmd_semantic_threshold)

    sl = sub.add_parser("semantic-lookup", help="semantic cache look-up latency, embedded and over HTTP")
    sl.add_argument("--sizes", default="10000,100000", help="entries in the table, comma-separated")
    sl.add_argument("--queries", type=int, default=200, help="timed look-ups per variant and key")
    sl.add_argument("--main-share", type=float, default=0.8, help="share of the entries under the main key")
    sl.add_argument("--family", choices=("semantic", "chunks"), default="semantic",
                    help="semantic-cache look-ups (default) or collection searches")
    sl.add_argument("--keep", help="build the stores in this folder and keep them (default: a temporary one)")
    sl.add_argument("--json", help="also write the results here")
    sl.set_defaults(func=_cmd_semantic_lookup)

    se = sub.add_parser("semantic-e2e", help="the semantic cache end to end on the paraphrase set")
    se.add_argument("--url", required=True, help="OpenAI-compatible embeddings base URL (e.g. http://127.0.0.1:9400/v1)")
    se.add_argument("--model", default="all-MiniLM-L6-v2", help="embedding model name at --url")
    se.add_argument("--max-distance", type=float, default=0.1, help="cache.semantic.max_distance")
    se.add_argument("--lookup-timeout", type=float, default=0.25, help="cache.semantic.lookup_timeout_s")
    se.add_argument("--limit", type=int, help="at most this many pairs of each kind")
    se.add_argument("--json", help="also write the results here")
    se.set_defaults(func=_cmd_semantic_e2e)
    return p


# Modules of the ``bench`` extra: a plain ``pip install llm-gateway`` lacks them.
BENCH_EXTRA = {"hdrh", "psutil", "matplotlib", "tqdm"}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in BENCH_EXTRA:
            raise
        print(f"error: this command needs {exc.name} from the bench extra: pip install 'llm-gateway[bench]'",
              file=sys.stderr)
        code = 2
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
