"""A vLLM fleet with a real vLLM server (CPU build, tiny model) that the gateway launches itself.

One real server plus one fake (``FakeVllm``, scripted metrics): a second real server would
cost another ~3 GB and ~30-60 s of this 2-core machine's time without testing anything the
fake does not (the fake stands for "the other server", whose load the test sets at will);
``loadtest/vllm_fleet.py`` runs two real servers for the TTFT and prefix-cache measurements.

The one test walks the fleet's life: the managed server starts out of rotation (traffic goes
to the other server) until ``/health`` answers; the scraper reads its real
``vllm:num_requests_running`` / ``_waiting``, ``kv_cache_usage_perc`` and prefix-cache counters;
with the real server queued up by direct traffic (``--max-num-seqs 2``) ``vllm-load`` sends new
requests to the other one, and the rows carry both snapshots; shared-prefix requests raise its
prefix-cache hits; killed mid-run it is taken out at once and every request still succeeds;
the supervisor restarts it and it comes back after ``/health``; the gateway's shutdown stops it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import warnings

import httpx
import pytest

from gateway.app import FINISHERS
from loadtest import vllm_server as vs
from tests.support.fake_upstream import FakeVllm
from tests.support.gateway import serve
from tests.support.polling import wait_for
from tests.support.vllm import _unavailable
from tests.support.vllm_fleet import alive, backend_status

pytestmark = pytest.mark.vllm

SYSTEM = ("You are the support assistant of a company that sells kettles, toasters and coffee machines. "
          "Answer briefly, politely and only about the products. ") * 10  # ~1,200 characters


def chat(client: httpx.Client, base: str, content: str, system: str | None = None, max_tokens: int = 4):
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
    return client.post(f"{base}/v1/chat/completions", json={"model": "tiny", "messages": messages,
                                                             "max_tokens": max_tokens, "temperature": 0})


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(entry))
    return out


def snapshot(gw, name: str) -> dict | None:
    """The backend's last scrape as /admin/vllm shows it; None while the admin call times out
    (two CPU cores saturated by a real vLLM under load can starve the gateway for a while)."""
    try:
        return backend_status(gw, name)["snapshot"]
    except httpx.TimeoutException:
        return None


def test_fleet_with_a_managed_real_vllm(tmp_path, request):
    python = vs.vllm_python()
    if not python.exists():
        _unavailable(f"vLLM venv python {python} not found: run `bash tests/vllm/setup_venv.sh`")
    model = vs.build_model(python)
    port = vs.free_port()
    log = tmp_path / "real.log"
    args = [a if a != "16" else "2" for a in vs.VLLM_ARGS]  # --max-num-seqs 2: queues form
    assert "--max-num-seqs" in args and args[args.index("--max-num-seqs") + 1] == "2"
    env = "{" + ", ".join(f'{k}: "{v}"' for k, v in vs.VLLM_ENV.items()) + "}"
    t_start = time.monotonic()
    with FakeVllm("tiny-llama") as fake:
        path = tmp_path / "gateway.yaml"
        path.write_text(f"""
telemetry: {{enabled: false}}
backends:
  real:
    type: vllm
    base_url: http://127.0.0.1:{port}/v1
    vllm: {{scrape_interval_ms: 200, timeout_ms: 10000, down_after: 5}}
    launch:
      model: "{model}"
      served_model_name: {vs.SERVED_MODEL_NAME}
      python: "{python}"
      args: {args}
      env: {env}
      log_file: "{log}"
      startup_timeout_s: {vs.startup_timeout()}
      stop_timeout_s: 20
      backoff_initial_s: 0.5
  fake: {{type: vllm, base_url: "{fake.url}", vllm: {{scrape_interval_ms: 200, timeout_ms: 10000, down_after: 5}}}}
models:
  tiny:
    strategy: vllm-load
    targets: [{{backend: real, model: {vs.SERVED_MODEL_NAME}}}, {{backend: fake, model: {vs.SERVED_MODEL_NAME}}}]
routing:
  retry: {{attempts: 1}}
  vllm_load: {{prefix_affinity: {{enabled: true, prefix_chars: 400}}}}
""")
        rows: list = []
        pid = None
        try:
            with serve(path=path) as gw, httpx.Client(timeout=120) as client:
                gw.app[FINISHERS].append(lambda ctx: rows.append((ctx.backend, ctx.route_candidates)))
                # 1. Health-gated: while vLLM loads, traffic goes to the other server.
                status = backend_status(gw, "real")
                assert status["state"] == "down" and status["managed"]["state"] == "starting"
                for i in range(3):
                    r = chat(client, gw.url, f"early {i}")
                    assert r.status_code == 200 and r.headers["x-gateway-backend"] == "fake"
                wait_for(lambda: backend_status(gw, "real")["state"] == "up", vs.startup_timeout(), "vLLM healthy")
                ready_s = time.monotonic() - t_start
                pid = backend_status(gw, "real")["managed"]["pid"]

                # 2. Real metrics, scraped. The other server looks busy: the idle real one wins, and
                # shared-prefix requests stay on it and hit its prefix cache.
                fake.waiting = 5
                wait_for(lambda: (snapshot(gw, "fake") or {}).get("waiting") == 5.0, 30, "fake scraped")
                before = wait_for(lambda: snapshot(gw, "real"), 30, "real server scraped")
                assert before["running"] == 0 and before["waiting"] == 0 and 0 <= before["kv_cache"] <= 1
                assert before["prefix_hits"] is not None and before["prefix_queries"] is not None
                for i in range(3):
                    r = chat(client, gw.url, f"question {i}", system=SYSTEM)
                    assert r.status_code == 200 and r.headers["x-gateway-backend"] == "real", r.text
                wait_for(lambda: (snapshot(gw, "real") or {}).get("prefix_hits", 0)
                         >= before["prefix_hits"] + 2 * 128, 10,
                         "prefix-cache hits scraped")
                after = wait_for(lambda: snapshot(gw, "real"), 30, "real server scraped")
                assert after["prefix_queries"] > before["prefix_queries"]

                # 3. The real server queued up by direct traffic: new requests go to the other one.
                fake.waiting = 1  # idle real would beat it (score 0 < 1)
                stop_direct = threading.Event()

                def direct_load():
                    with httpx.Client(timeout=300) as c:
                        while not stop_direct.is_set():
                            try:
                                c.post(f"http://127.0.0.1:{port}/v1/completions",
                                       json={"model": vs.SERVED_MODEL_NAME, "prompt": "load", "max_tokens": 900,
                                             "ignore_eos": True})
                            except httpx.HTTPError:
                                return

                threads = [threading.Thread(target=direct_load, daemon=True) for _ in range(12)]
                for t in threads:
                    t.start()
                try:
                    wait_for(lambda: (snapshot(gw, "real") or {}).get("waiting", 0) >= 4, 60, "real server queued")
                    queued = True
                except AssertionError:
                    # How fast this CPU build drains its queue depends on the machine's other load;
                    # steering by queue depth is also covered deterministically with fake servers
                    # (test_vllm_fleet.py), so here it is checked when a queue does build.
                    queued = False
                    warnings.warn("the real vLLM server never queued 4 requests: queue steering not checked "
                                  "against it in this run", stacklevel=1)
                busy = None
                if queued:
                    # A scrape taken as one request finishes and before the queue's next is admitted
                    # shows one running: poll for the saturated state (both of --max-num-seqs 2
                    # slots), and never more than the limit in any scrape seen meanwhile.
                    seen: list[dict] = []

                    def saturated():
                        s = snapshot(gw, "real")
                        if s:
                            seen.append(s)
                        return s if s and s["running"] == 2 and s["kv_cache"] > 0 else None

                    try:
                        busy = wait_for(saturated, 30, "real server scraped with both slots running", interval=0.2)
                    except AssertionError:
                        # Saturated CPU can starve the scrapes themselves: the same machine-load case
                        # as above, checked with fakes instead. Scrapes that did come must not be idle.
                        assert not seen or max(s["running"] for s in seen) >= 1, seen
                        warnings.warn("the queued real vLLM server was not scraped with both slots running "
                                      "within 30 s: queue steering not checked against it in this run",
                                      stacklevel=1)
                    assert all(s["running"] <= 2 for s in seen), seen
                if busy is not None:
                    del rows[:]
                    for i in range(5):
                        r = chat(client, gw.url, f"while busy {i}", system=SYSTEM)
                        assert r.status_code == 200 and r.headers["x-gateway-backend"] == "fake"
                    backend, candidates = rows[-1]
                    by_target = {c["target"]: c for c in candidates}
                    real_row = by_target[f"real/{vs.SERVED_MODEL_NAME}"]
                    assert backend == "fake"
                    if "running" in real_row["load"]:  # scored on a fresh snapshot (scrapes lag when saturated)
                        assert real_row["load"]["running"] == 2
                        assert real_row["score"] > by_target[f"fake/{vs.SERVED_MODEL_NAME}"]["score"]
                stop_direct.set()
                for t in threads:
                    t.join(120)
                wait_for(lambda: (snapshot(gw, "real") or {}).get("running", 1) == 0
                         and (snapshot(gw, "real") or {}).get("waiting", 1) == 0, 60, "real server drained")

                # 4. Killed mid-run: out of rotation at once; every request still succeeds (those in
                # flight to it fail over before their first byte).
                fake.waiting = 3  # the idle real server is preferred until it dies
                wait_for(lambda: (snapshot(gw, "fake") or {}).get("waiting") == 3.0, 30, "fake scraped")
                results: list[tuple[int, str]] = []

                def traffic():
                    with httpx.Client(timeout=120) as c:
                        for i in range(40):
                            r = chat(c, gw.url, f"during the kill {i}", max_tokens=32)
                            results.append((r.status_code, r.headers.get("x-gateway-backend", "")))

                sender = threading.Thread(target=traffic)
                sender.start()
                wait_for(lambda: results, 60, "traffic under way")
                os.killpg(pid, signal.SIGKILL)
                wait_for(lambda: backend_status(gw, "real")["state"] == "down", 30, "down after the kill")
                sender.join(120)
                assert [s for s, _ in results] == [200] * 40
                served = [b for _, b in results]
                assert served[0] == "real" and served[-1] == "fake", served
                # 5. Restarted with backoff, back in rotation after /health.
                wait_for(lambda: backend_status(gw, "real")["managed"]["restarts"] == 1, 30, "restart")
                wait_for(lambda: backend_status(gw, "real")["state"] == "up", vs.startup_timeout(), "healthy again")
                restarted_s = time.monotonic() - t_start
                new_pid = backend_status(gw, "real")["managed"]["pid"]
                assert new_pid != pid
                fake.waiting = 5
                wait_for(lambda: (snapshot(gw, "fake") or {}).get("waiting") == 5.0, 30, "fake scraped")
                r = chat(client, gw.url, "after the restart")
                assert r.status_code == 200 and r.headers["x-gateway-backend"] == "real"
            # 6. The gateway's shutdown stopped the server (and its process group).
            assert not alive(new_pid)
            wait_for(lambda: not group_members(new_pid), 30, "the server's process group gone")
            print(f"\n[vllm-fleet] ready after {ready_s:.0f}s, restarted and healthy at {restarted_s:.0f}s, "
                  f"total {time.monotonic() - t_start:.0f}s")
        except BaseException:
            sys.stderr.write(f"\n===== managed vLLM log ({log}) =====\n{vs.tail(log, 120)}\n")
            raise
