"""Functional tests of the load test tool itself (``loadtest/``).

Short closed- and open-loop runs against the fake upstream on loopback check counts, SSE
``[DONE]`` checking, error accounting and the JSON shape; the bench runs end to end on a tiny
plan. Nothing here asserts on timings.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from gateway.proxy.server import BackgroundServer
from loadtest import stats
from loadtest.aggregate import aggregate
from loadtest.bare_proxy import build_bare_proxy
from loadtest.bench import BenchOptions, run_bench
from loadtest.fake_upstream import FakeSettings, FakeUpstreamThread
from loadtest.generator import Step, run_async, run_scenario
from loadtest.hotspots import fold, hotspots_markdown
from loadtest.httpclient import RawConnection
from loadtest.report import bench_table, verdicts
from loadtest.scenario import RequestFactory, Scenario, ScenarioError, load_scenario
from tests.support.gateway import serve
from tests.support.polling import wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fake():
    with FakeUpstreamThread(FakeSettings(tokens=5)) as f:
        yield f


def _closed(seconds: float = 1.0, concurrency: int = 4) -> list[Step]:
    return [Step("closed", seconds, 0.2, concurrency=concurrency)]


# --- scenarios -------------------------------------------------------------------------------
def test_shipped_scenarios_load():
    for name in ("chat-json", "chat-stream", "chat-mixed"):
        s = load_scenario(name)
        assert s.name == name
    assert load_scenario("chat-mixed").mode == "open"


def test_scenario_rejects_unknown_keys_and_bad_values(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stream_ration: 0.5\n")
    with pytest.raises(ScenarioError, match="stream_ration"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="stream_ratio"):
        Scenario(stream_ratio=1.5)
    with pytest.raises(ScenarioError, match="mode"):
        Scenario(mode="sideways")


def test_request_factory_mix_streams_and_repeats():
    s = Scenario(models={"a": 3, "b": 1}, stream_ratio=0.5, repeat_share=0.2, repeat_pool=4, output_tokens=7,
                 endpoint="chat/completions")
    f = RequestFactory(s)
    bodies = [f.next() for _ in range(4000)]
    parsed = [(stream, orjson.loads(body)) for stream, body in bodies]
    share_a = sum(b["model"] == "a" for _, b in parsed) / len(parsed)
    share_stream = sum(stream for stream, _ in parsed) / len(parsed)
    assert 0.7 < share_a < 0.8
    assert 0.45 < share_stream < 0.55
    assert all(b.get("stream", False) == stream and b["max_tokens"] == 7 for stream, b in parsed)
    texts = [b["messages"][0]["content"] for _, b in parsed]
    repeats = sum("repeat-" in t for t in texts)
    assert 0.15 < repeats / len(texts) < 0.25
    unique = [t for t in texts if "repeat-" not in t]
    assert len(set(unique)) == len(unique)  # every non-repeat request is distinct (no cache hits)
    completions = RequestFactory(Scenario(endpoint="completions"))
    assert "prompt" in orjson.loads(completions.next()[1])


# --- the raw HTTP parser -----------------------------------------------------------------------
class _Transport:
    def __init__(self):
        self.written = b""
        self.closed = False

    def write(self, data):
        self.written += data

    def close(self):
        self.closed = True

    def abort(self):
        self.closed = True


def _drive(response: bytes, piece: int):
    async def main():
        conn = RawConnection(b"POST /v1/x HTTP/1.1\r\nContent-Length: %d\r\n\r\n")
        conn.connection_made(_Transport())
        fut = conn.request(True, b"{}")
        for i in range(0, len(response), piece):
            conn.data_received(response[i:i + piece])
        return await fut, conn

    return run_async(main())


def _sse_response(events: list[bytes], *, done: bool = True) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events)
    if done:
        body += b"e\r\ndata: [DONE]\n\n\r\n"
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            + body + b"0\r\n\r\n")


@pytest.mark.parametrize("piece", [1, 3, 7, 4096])
def test_raw_parser_chunked_sse_any_split(piece):
    events = [b'data: {"n":%d}\n\n' % i for i in range(5)]
    res, conn = _drive(_sse_response(events), piece)
    assert res.status == 200 and res.done and not res.sse_error
    assert res.events == 6  # five chunks + [DONE]
    assert res.nbytes == sum(map(len, events)) + len(b"data: [DONE]\n\n")
    assert conn.alive


def test_raw_parser_flags_missing_done_and_error_events():
    res, _ = _drive(_sse_response([b'data: {"n":1}\n\n'], done=False), 5)
    assert not res.done and res.events == 1
    res, _ = _drive(_sse_response([b'data: {"error": {"message": "boom"}}\n\n']), 4096)
    assert res.sse_error


def test_raw_parser_content_length_and_connection_close():
    body = b'{"ok":true}'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
    res, conn = _drive(head % len(body) + body, 2)
    assert res.status == 200 and res.nbytes == len(body) and res.gaps is None
    assert not conn.alive  # the server said close


# --- runs against the fake upstream ---------------------------------------------------------------
@pytest.mark.parametrize("engine", ["raw", "aiohttp"])
def test_closed_loop_counts_and_done(fake, engine):
    s = Scenario(stream_ratio=0.5, output_tokens=5)
    out = run_scenario(fake.url + "/v1", s, engine=engine, progress=False, steps=_closed())
    step = out["steps"][0]
    assert step["errors"] == {} and step["ok"] > 20
    assert step["requests"] == step["ok"]
    assert 0 < step["streams"] < step["ok"]
    assert step["missing_done"] == 0
    # 5 one-token chunks + [DONE] per stream
    assert step["sse_events"] == 6 * step["streams"]
    assert step["latency_ms"]["count"] == step["ok"]
    assert step["ttfb_ms"]["count"] == step["streams"]
    assert "count" in step["itl_ms"]  # gaps exist only between reads: a loaded box may coalesce them
    assert step["throughput_rps"] > 0
    assert stats.decode(step["histograms"]["latency"]).get_total_count() == step["ok"]


def test_open_loop_keeps_the_offered_rate(fake):
    s = Scenario(mode="open", rates=[200], stream_ratio=0.3, output_tokens=5)
    out = run_scenario(fake.url + "/v1", s, progress=False,
                       steps=[Step("open", 1.5, 0.2, rate=200.0)])
    step = out["steps"][0]
    assert step["mode"] == "open" and step["offered_rps"] == 200
    assert step["errors"] == {}
    assert 150 <= step["requests"] <= 450  # Poisson arrivals over 1.5 s at 200/s
    assert step["dispatch_lag_ms"]["count"] == step["requests"]
    assert step["missing_done"] == 0


def test_connection_refused_is_counted_not_raised():
    from loadtest.procs import free_port

    s = Scenario()
    out = run_scenario(f"http://127.0.0.1:{free_port()}/v1", s, progress=False,
                       steps=[Step("open", 0.5, 0.0, rate=50.0)])
    step = out["steps"][0]
    assert step["ok"] == 0 and sum(step["errors"].values()) > 0
    assert all(k.startswith("connect:") for k in step["errors"])


def test_truncated_stream_counts_missing_done():
    async def truncated(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices":[]}\n\n')
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", truncated)
    with BackgroundServer(app) as srv:
        out = run_scenario(srv.url + "/v1", Scenario(stream_ratio=1.0), progress=False, steps=_closed(0.5, 2))
    step = out["steps"][0]
    assert step["ok"] == 0 and step["missing_done"] > 0
    assert step["errors"]["missing_done"] == step["missing_done"]


def test_http_errors_are_counted_by_status():
    async def limited(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"error": {"message": "slow down"}}, status=429)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", limited)
    with BackgroundServer(app) as srv:
        out = run_scenario(srv.url + "/v1", Scenario(), progress=False, steps=_closed(0.5, 2))
    step = out["steps"][0]
    assert step["ok"] == 0 and step["errors"].get("http_429", 0) > 0
    assert step["requests"] == step["errors"]["http_429"]


def test_bare_proxy_and_gateway_relay_through_the_tool(fake):
    bare = BackgroundServer(build_bare_proxy(fake.url))
    cfg = (REPO / "loadtest" / "configs" / "features-off.yaml").read_text().replace(
        "${LOADTEST_UPSTREAM_URL}", fake.url)
    gateway = serve(cfg)
    with bare, gateway:
        for url in (bare.url, gateway.url):
            out = run_scenario(url + "/v1", Scenario(stream_ratio=0.5, output_tokens=5), progress=False,
                               steps=_closed(0.5, 4))
            step = out["steps"][0]
            assert step["ok"] > 0 and step["errors"] == {}, (url, step["errors"])
            assert step["missing_done"] == 0 and step["sse_events"] == 6 * step["streams"]


def test_probe_reports_server_cpu_and_rss(fake):
    import os

    from loadtest.procs import ProcessProbe

    out = run_scenario(fake.url + "/v1", Scenario(), progress=False, steps=_closed(0.5, 2),
                       probe=ProcessProbe(os.getpid()))
    server = out["steps"][0]["server"]
    assert server["cpu_s"] >= 0 and server["rss_mib"] > 0 and "cpu_ms_per_req" in server


# --- CLI, bench, report, plot, profile ----------------------------------------------------------
def test_cli_run_writes_json_and_png(fake, tmp_path):
    pytest.importorskip("matplotlib")
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest", "run", "--url", fake.url + "/v1", "--mode", "open", "--rate", "50,100",
         "--duration", "0.5", "--warmup", "0", "--stream-ratio", "0.5", "--json", str(out), "--plot", str(png),
         "--no-progress", "--fail-on-error"], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    data = orjson.loads(out.read_bytes())
    assert [s["offered_rps"] for s in data["steps"]] == [50, 100]
    assert data["target"]["url"] == fake.url + "/v1"
    assert {"latency_ms", "throughput_rps", "errors", "histograms"} <= set(data["steps"][0])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "open" in proc.stderr and "req/s" in proc.stderr


def test_cli_rejects_bad_scenario(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("models: {}\n")
    proc = subprocess.run([sys.executable, "-m", "loadtest", "run", "--url", "http://127.0.0.1:9/v1",
                           "--scenario", str(bad)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "models" in proc.stderr


def test_bench_end_to_end_on_a_tiny_plan(tmp_path):
    configs = REPO / "loadtest" / "configs"
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"""
upstream: {{tokens: 5}}
targets:
  direct: {{kind: direct}}
  bare-proxy: {{kind: bare}}
  gateway-off: {{kind: gateway, config: {configs / 'features-off.yaml'}}}
baseline: bare-proxy
reference: direct
warm_up_s: 0.3
rounds: 2
phases:
  - {{name: saturation-json, scenario: chat-json, mode: closed, concurrency: 4, duration_s: 0.4, warmup_s: 0.1}}
  - {{name: added-latency-stream, scenario: chat-stream, mode: open, rate: 50, duration_s: 0.4, warmup_s: 0.1}}
sweep: {{scenario: chat-json, rates: [50], duration_s: 0.4, warmup_s: 0}}
soak: {{target: gateway-off, scenario: chat-json, concurrency: 4, requests: 600, checkpoints: [200, 600]}}
""")
    out = tmp_path / "out"
    assert run_bench(BenchOptions(plan=str(plan), out_dir=out, progress=False)) == 0
    data = orjson.loads((out / "bench.json").read_bytes())
    table = data["table"]
    assert set(table) == {"saturation-json", "added-latency-stream"}
    assert set(table["saturation-json"]) == {"direct", "bare-proxy", "gateway-off"}
    for phase in table.values():
        for name, row in phase.items():
            assert row["ok"] > 0 and row["errors"] == {}, (name, row["errors"])
            assert len(row["per_round_rps"]) == 2
            assert "added_ms" in row
    assert table["saturation-json"]["gateway-off"]["cpu_ms_per_req"] is not None
    assert table["saturation-json"]["direct"]["cpu_ms_per_req"] is None
    assert data["soak"]["requests"] >= 600 and set(data["soak"]["rss_mib_at"]) == {"200", "600"}
    assert len(data["sweep"]) == 3
    md = (out / "results.md").read_text()
    assert "| saturation-json | gateway-off |" in md
    assert (out / "logs" / "gateway-off.log").exists()


def _row(rps, p50, p99, cpu=None, mode="closed"):
    h = stats.histogram_of([int(p50 * 1000)] * 50 + [int(p99 * 1000)] * 2)
    return {"mode": mode, "offered_rps": 300 if mode == "open" else None, "ok": 10, "duration_s": 1.0,
            "errors": {}, "throughput_rps": rps, "histograms": {"latency": stats.encode(h)},
            "server": {"cpu_s": cpu * 10 / 1000, "rss_mib": 50.0, "load_util": 0.5} if cpu else {"load_util": 0.5}}


def test_aggregate_and_verdicts():
    runs = []
    for rnd in (1, 2):
        runs += [
            {"round": rnd, "phase": "saturation-json", "target": "bare-proxy", "result": _row(8000, 4, 8, 0.11)},
            {"round": rnd, "phase": "saturation-json", "target": "gateway-on", "result": _row(5000, 6, 12, 0.2)},
            {"round": rnd, "phase": "added-latency-json", "target": "direct", "result": _row(300, 0.1, 0.5, None, "open")},
            {"round": rnd, "phase": "added-latency-json", "target": "gateway-on",
             "result": _row(300, 0.4, 3.0, 0.3, "open")},
        ]
    table = aggregate(runs, "direct")
    gw = table["saturation-json"]["gateway-on"]
    assert gw["throughput_rps"] == 10.0 and gw["per_round_rps"] == [5000, 5000]
    added = table["added-latency-json"]["gateway-on"]["added_ms"]
    assert added["p50"] == pytest.approx(0.3, abs=0.01)
    checks = {c["check"]: c["met"] for c in verdicts(table, {"rss_mib_at": {"1": 100, "3": 102},
                                                             "rss_growth_pct": 2.0}, baseline="bare-proxy")}
    assert checks["added-latency-json: added latency p50 at 300 req/s"] is True
    assert checks["added-latency-json: added latency p99 at 300 req/s"] is False
    assert checks["saturation-json: CPU per request <= 2x bare proxy"] is True
    assert any(k.startswith("soak") and v for k, v in checks.items())
    md = bench_table(table, soak=None, checks=verdicts(table, None))
    assert "| added-latency-json @300/s | gateway-on |" in md


def test_profile_folding():
    collapsed = ("<module> (/x/gateway/cli/commands.py:1);proxy (/x/gateway/proxy/handlers.py:10);loads (<built-in>) 3\n"
                 "<module> (/x/gateway/cli/commands.py:1);run (/usr/lib/python3.11/asyncio/events.py:80) 1\n")
    self_t, incl, by_module, total = fold(collapsed)
    assert total == 4
    assert incl["proxy (gateway/proxy/handlers.py)"] == 3
    assert self_t["run (asyncio/events.py)"] == 1
    md = hotspots_markdown(collapsed)
    assert "gateway/proxy/handlers.py" in md and "75.0%" in md


def test_shipped_gateway_configs_validate(monkeypatch, tmp_path):
    from gateway.config import load_config

    monkeypatch.setenv("LOADTEST_UPSTREAM_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LOADTEST_DATA_DIR", str(tmp_path))
    off = load_config(str(REPO / "loadtest" / "configs" / "features-off.yaml")).config
    on = load_config(str(REPO / "loadtest" / "configs" / "features-on.yaml")).config
    assert not off.telemetry.enabled and on.telemetry.enabled
    assert not off.cache.enabled and on.cache.enabled
    assert set(off.models) <= set(on.models)  # the scenarios' models exist in both
    assert [k.tenant for k in on.keys] == ["bench"] and not off.keys  # features on: the generator's key
    monkeypatch.setenv("LOADTEST_CLICKHOUSE_DSN", "http://127.0.0.1:9/bench")
    ch = load_config(str(REPO / "loadtest" / "configs" / "features-on-clickhouse.yaml")).config
    assert ch.telemetry.clickhouse.dsn == "http://127.0.0.1:9/bench" and on.telemetry.clickhouse.dsn is None
    # the two features-on files differ only in where the rows go
    assert ch.model_dump(exclude={"telemetry"}) == on.model_dump(exclude={"telemetry"})


def test_probe_counts_the_ingester_apart_from_the_serving_process():
    """A tree like ``serve``'s (a server with an ``llm-gateway ingest`` child): the child's CPU
    and RSS are reported as the ingester's, not the serving process's."""
    import psutil

    from loadtest.procs import ProcessProbe, ingester_pids

    burn = "import time\ntime.sleep(1)\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\ntime.sleep(60)"
    parent = ("import subprocess, sys, time\n"
              f"subprocess.Popen([sys.executable, '-c', {burn!r}, 'gateway', 'ingest'])\ntime.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", parent])
    try:
        wait_for(lambda: ingester_pids(proc.pid), timeout=10)
        probe = ProcessProbe(proc.pid)
        probe.start()
        child = psutil.Process(ingester_pids(proc.pid)[0])
        wait_for(lambda: child.cpu_times().user + child.cpu_times().system >= 0.6, timeout=20)
        out = probe.stop()
        assert out["ingest_cpu_s"] > 0.3 and out["cpu_s"] < 0.2, out
        assert out["ingest_rss_mib"] > 0 and out["rss_mib"] > 0
    finally:
        for p in psutil.Process(proc.pid).children(recursive=True):
            p.kill()
        proc.kill()
        proc.wait()


def test_soak_checkpoints_use_the_median_of_nearby_samples():
    from loadtest.soak import checkpoint_medians

    samples = [(n, 0.0, 100.0) for n in range(0, 1000, 10)] + [(1000, 0.0, 500.0), (1010, 0.0, 100.0)]
    assert checkpoint_medians(samples, [1000, 5000]) == {1000: 100.0}  # one peak does not count
