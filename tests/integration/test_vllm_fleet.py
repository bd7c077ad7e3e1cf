"""vLLM fleets through the gateway, against fake vLLM servers on loopback (``FakeVllm``:
scripted ``/metrics`` and ``/health``): queue depth steers ``vllm-load``, a burst spreads, a
failing or unreachable server is taken out of rotation and comes back, reloads start and stop
scrapers, and a managed server (a stand-in ``vllm`` package run by the launcher) is
health-gated, restarted after a kill, killed when it misses its startup deadline, and stopped
with the gateway."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from gateway.app import FINISHERS, WATCHER
from gateway.vllm import FLEET
from tests.support.fake_upstream import FakeVllm
from tests.support.gateway import serve
from tests.support.polling import async_wait_for, stays, stops_growing, wait_for
from tests.support.vllm_fleet import MSG, admin, alive, backend_status, fleet_config, scraped


@pytest.fixture
def fakes():
    with FakeVllm("vllm-a") as a, FakeVllm("vllm-b") as b:
        yield a, b


def send(gw, n: int = 10, body: dict | None = None) -> collections.Counter:
    seen = collections.Counter()
    with httpx.Client(timeout=30) as client:
        for _ in range(n):
            r = client.post(f"{gw.url}/v1/chat/completions", json=body or {"model": "tiny", "messages": MSG})
            assert r.status_code == 200, r.text
            seen[r.headers["x-gateway-backend"]] += 1
    return seen


def capture(gw) -> list:
    rows = []
    gw.app[FINISHERS].append(lambda ctx: rows.append((ctx.backend, ctx.strategy, ctx.route_candidates)))
    return rows


def test_queue_depth_steers_traffic_and_rows_carry_the_snapshots(make_gateway, fakes):
    a, b = fakes
    gw = make_gateway(fleet_config(a, b))
    rows = capture(gw)
    a.waiting, a.running, a.kv_cache = 5, 2, 0.6
    wait_for(lambda: scraped(gw, "va", waiting=5.0) and scraped(gw, "vb", waiting=0.0), what="first scrapes")
    assert send(gw, 12) == {"vb": 12}
    backend, strategy, candidates = rows[-1]
    assert backend == "vb" and strategy == "vllm-load"
    by_target = {c["target"]: c for c in candidates}
    assert by_target["va/tiny-llama"]["load"]["waiting"] == 5.0
    assert by_target["va/tiny-llama"]["load"]["kv_cache"] == 0.6
    assert by_target["va/tiny-llama"]["score"] == 5 + 0.5 + 1.2
    assert by_target["vb/tiny-llama"]["load"]["waiting"] == 0.0
    # The queue moves to the other server: so does the traffic.
    a.waiting, a.running, a.kv_cache = 0, 0, 0.0
    b.waiting = 4
    wait_for(lambda: scraped(gw, "va", waiting=0.0) and scraped(gw, "vb", waiting=4.0), what="new scrapes")
    assert send(gw, 12) == {"va": 12}
    status = backend_status(gw, "va")
    assert status["state"] == "up" and status["scrapes"] >= 2 and status["managed"] is None


def test_a_burst_between_scrapes_spreads(make_gateway, fakes):
    a, b = fakes
    for fake in fakes:
        fake.json({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
    gw = make_gateway(fleet_config(a, b, interval_ms=60_000))  # one scrape at start, none during the burst
    wait_for(lambda: scraped(gw, "va") and scraped(gw, "vb"), what="first scrapes")
    for fake in fakes:  # every request stays in flight until all ten have been placed
        fake.hold()

    async def burst():
        async with httpx.AsyncClient(timeout=30) as client:
            calls = [asyncio.ensure_future(client.post(f"{gw.url}/v1/chat/completions",
                                                       json={"model": "tiny", "messages": MSG})) for _ in range(10)]
            await async_wait_for(lambda: len(a.received) + len(b.received) == 10, what="ten requests in flight")
            for fake in fakes:
                fake.release()
            return await asyncio.gather(*calls)

    seen = collections.Counter(r.headers["x-gateway-backend"] for r in asyncio.run(burst()))
    assert seen == {"va": 5, "vb": 5}


def test_failing_health_takes_a_server_out_and_back_in(make_gateway, fakes):
    a, b = fakes
    gw = make_gateway(fleet_config(a, b))
    wait_for(lambda: scraped(gw, "va") and scraped(gw, "vb"), what="first scrapes")
    a.health_status = 503
    wait_for(lambda: backend_status(gw, "va")["state"] == "down", what="va down")
    status = backend_status(gw, "va")
    assert "health answered 503" in status["last_error"] and status["snapshot"] is None
    circuits = {t["target"]: t["circuit"] for t in admin(gw, "/admin/backends")["targets"]}
    assert circuits["va/tiny-llama"] == "open"  # created by the scraper, before any request
    assert circuits.get("vb/tiny-llama", "closed") == "closed"
    before = len(a.received)
    b.waiting = 9  # even a busy vb beats a server that is out
    assert send(gw, 10) == {"vb": 10}
    assert len(a.received) == before
    a.health_status = 200
    wait_for(lambda: backend_status(gw, "va")["state"] == "up" and scraped(gw, "vb", waiting=9.0), what="va up")
    circuits = {t["target"]: t["circuit"] for t in admin(gw, "/admin/backends")["targets"]}
    assert circuits["va/tiny-llama"] == "closed"
    assert send(gw, 10) == {"va": 10}


def test_an_unreachable_server_is_taken_out_and_traffic_continues(make_gateway):
    with FakeVllm("vllm-b") as b:
        a = FakeVllm("vllm-a")
        a.__enter__()
        gw = make_gateway(fleet_config(a, b))
        wait_for(lambda: scraped(gw, "va") and scraped(gw, "vb"), what="first scrapes")
        a.__exit__(None, None, None)  # the server dies
        wait_for(lambda: backend_status(gw, "va")["state"] == "down", what="va down")
        assert "unreachable" in backend_status(gw, "va")["last_error"]
        assert send(gw, 10) == {"vb": 10}


def test_metrics_that_are_not_vllm_count_as_failures(make_gateway, fakes):
    a, b = fakes
    a.metrics_status = 500
    gw = make_gateway(fleet_config(a, b))
    wait_for(lambda: backend_status(gw, "va")["state"] == "down", what="va down")
    assert "metrics answered 500" in backend_status(gw, "va")["last_error"]
    assert send(gw, 4) == {"vb": 4}


def test_reload_starts_and_stops_scrapers(fakes, tmp_path):
    a, b = fakes
    path = tmp_path / "gateway.yaml"
    base = fleet_config(a, b, extra="server: {reload_interval_s: 0.05}\n")
    path.write_text(base)
    with FakeVllm("vllm-c") as c, serve(path=path) as gw:
        fleet = gw.app[FLEET]
        wait_for(lambda: scraped(gw, "va") and scraped(gw, "vb"), what="first scrapes")
        assert set(fleet.scrapers) == {"va", "vb"}
        path.write_text(base.replace("backends:\n", f'backends:\n  vc: {{type: vllm, base_url: "{c.url}", '
                                                     'vllm: {scrape_interval_ms: 40}}\n'))
        wait_for(lambda: c.scrapes >= 2, what="vc scraped after the reload")
        assert set(fleet.scrapers) == {"va", "vb", "vc"}
        va_scraper = fleet.scrapers["va"]
        path.write_text(base.replace(f'  vb: {{type: vllm, base_url: "{b.url}", vllm: {{scrape_interval_ms: 40, '
                                     'timeout_ms: 500}}\n', "").replace(", {backend: vb, model: tiny-llama}", ""))
        wait_for(lambda: set(fleet.scrapers) == {"va"}, what="vb and vc scrapers stopped")
        assert fleet.scrapers["va"] is va_scraper  # unchanged backends keep their scraper
        # vb was scraped every 40 ms: quiet for 0.3 s means its scraper stopped
        wait_for(lambda: stops_growing(lambda: b.scrapes, 0.3), what="vb's scrapes to stop")
        assert "vb" not in gw.app[FLEET]._health.loads


def test_scraping_can_be_turned_off(make_gateway, fakes):
    a, b = fakes
    cfg = fleet_config(a, b).replace("vllm: {scrape_interval_ms: 40, timeout_ms: 500}", "vllm: {enabled: false}")
    gw = make_gateway(cfg)
    assert stays(lambda: a.scrapes == b.scrapes == 0, 0.3)  # scraping would start at once, every 40 ms
    assert admin(gw)["backends"] == []
    assert sum(send(gw, 6).values()) == 6  # ranked by in-flight alone


# -- managed servers ---------------------------------------------------------------------------

FAKE_API_SERVER = '''
"""Stand-in for vllm.entrypoints.openai.api_server: a stdlib HTTP server that starts serving
after $FAKE_VLLM_DELAY seconds (vLLM loads its model first) and answers /health, /metrics and
chat completions."""
import argparse, json, os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

p = argparse.ArgumentParser()
p.add_argument("--model"); p.add_argument("--host"); p.add_argument("--port", type=int)
p.add_argument("--served-model-name", default=None)
args, rest = p.parse_known_args()
print("fake vLLM", args, rest, flush=True)
time.sleep(float(os.environ.get("FAKE_VLLM_DELAY", "0")))
name = args.served_model_name or args.model

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def _send(self, code, body, ctype="application/json"):
        self.send_response(code); self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        if self.path == "/health":
            return self._send(200, b"")
        if self.path == "/metrics":
            text = ("vllm:num_requests_running{model_name=\\"%s\\"} 0.0\\n"
                    "vllm:num_requests_waiting{model_name=\\"%s\\"} 0.0\\n" % (name, name))
            return self._send(200, text.encode(), "text/plain")
        self._send(404, b"{}")
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = {"id": "c", "object": "chat.completion", "created": 1, "model": name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": str(os.getpid())},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        self._send(200, json.dumps(body).encode())

ThreadingHTTPServer((args.host, args.port), H).serve_forever()
'''


@pytest.fixture
def fake_vllm_package(tmp_path) -> Path:
    root = tmp_path / "fakevllm"
    pkg = root / "vllm" / "entrypoints" / "openai"
    pkg.mkdir(parents=True)
    for d in (root / "vllm", root / "vllm" / "entrypoints", pkg):
        (d / "__init__.py").write_text("")
    (pkg / "api_server.py").write_text(textwrap.dedent(FAKE_API_SERVER))
    return root


def managed_config(root: Path, port: int, log: Path, delay: float = 0.8, startup_timeout_s: float = 30,
                   extra_launch: str = "") -> str:
    return f"""
telemetry: {{enabled: false}}
server: {{reload_interval_s: 0.05}}
backends:
  local:
    type: vllm
    base_url: http://127.0.0.1:{port}/v1
    vllm: {{scrape_interval_ms: 50, timeout_ms: 500}}
    launch:
      model: /models/tiny
      served_model_name: tiny-llama
      python: {sys.executable}
      args: [--max-num-seqs, "2"]
      env: {{PYTHONPATH: "{root}", FAKE_VLLM_DELAY: "{delay}"}}
      cwd: "{root}"
      log_file: "{log}"
      startup_timeout_s: {startup_timeout_s}
      stop_timeout_s: 5
      backoff_initial_s: 0.2
      backoff_max_s: 1
{extra_launch}
models:
  tiny: {{strategy: vllm-load, targets: [{{backend: local, model: tiny-llama}}]}}
"""


def chat_status(gw) -> int:
    return httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "tiny", "messages": MSG}, timeout=10).status_code


def test_managed_server_is_health_gated_restarted_and_stopped(fake_vllm_package, tmp_path):
    from gateway.proxy.server import free_port

    port = free_port()
    log = tmp_path / "logs" / "local.log"
    path = tmp_path / "gateway.yaml"
    text = managed_config(fake_vllm_package, port, log)
    path.write_text(text)
    with serve(path=path) as gw:
        status = backend_status(gw, "local")
        assert status["state"] == "down" and status["managed"]["state"] == "starting"
        assert chat_status(gw) == 503  # not healthy yet: no traffic
        wait_for(lambda: backend_status(gw, "local")["state"] == "up", 60, "managed server healthy")
        managed = backend_status(gw, "local")["managed"]
        assert managed["state"] == "running" and managed["restarts"] == 0
        pid = managed["pid"]
        assert chat_status(gw) == 200
        # A reload that leaves the launch block alone leaves the server running.
        reloads = gw.app[WATCHER].reloads
        path.write_text(text + "\nrouting: {retry: {attempts: 1}}\n")
        wait_for(lambda: gw.app[WATCHER].reloads > reloads, what="the reload")
        assert backend_status(gw, "local")["managed"]["pid"] == pid
        # Killed: out of rotation at once, restarted with backoff, back after /health.
        os.killpg(pid, signal.SIGKILL)
        wait_for(lambda: backend_status(gw, "local")["state"] == "down", 20, "down after the kill")
        wait_for(lambda: backend_status(gw, "local")["managed"]["restarts"] == 1, 30, "restart")
        wait_for(lambda: backend_status(gw, "local")["state"] == "up", 60, "healthy again")
        managed = backend_status(gw, "local")["managed"]
        assert managed["pid"] != pid and managed["last_exit"] == -signal.SIGKILL
        assert chat_status(gw) == 200
        new_pid = managed["pid"]
    assert not alive(new_pid)  # stopped with the gateway
    text = log.read_text()
    assert text.count("llm-gateway starts") == 2 and "--max-num-seqs" in text


def test_managed_server_that_misses_its_startup_deadline_is_restarted(fake_vllm_package, tmp_path):
    from gateway.proxy.server import free_port

    path = tmp_path / "gateway.yaml"
    path.write_text(managed_config(fake_vllm_package, free_port(), tmp_path / "l.log", delay=60, startup_timeout_s=0.5))
    with serve(path=path) as gw:
        wait_for(lambda: backend_status(gw, "local")["managed"]["restarts"] >= 1, 30, "a restart")
        status = backend_status(gw, "local")
        assert status["state"] == "down"
        pid = status["managed"]["pid"]
    assert pid is None or not alive(pid)


def test_workers_do_not_launch_servers(fake_vllm_package, tmp_path):
    from gateway.proxy.server import free_port

    path = tmp_path / "gateway.yaml"
    path.write_text(managed_config(fake_vllm_package, free_port(), tmp_path / "l.log"))
    with serve(path=path, launch_servers=False) as gw:
        assert stays(lambda: admin(gw)["backends"][0]["managed"] is None, 0.3)
        status = admin(gw)
        assert status["launch_servers"] is False
        assert status["backends"][0]["managed"] is None and status["backends"][0]["state"] == "down"
