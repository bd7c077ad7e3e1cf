"""``serve --workers 2`` keeps its workers: a worker killed with ``kill -9`` is replaced, and a
``kill -9`` of ``serve`` takes its workers (and its ingester) with it, so none serves on
unsupervised and a restart finds the port free."""

from __future__ import annotations

import signal

import httpx
import psutil

from tests.support.gateway_process import Gateway, write_config
from tests.support.polling import wait_for
from tests.support.telemetry import isolate_telemetry_data  # noqa: F401


def workers(gw: Gateway) -> set[int]:
    """Pids of the serving workers (children of serve other than the ingester)."""
    out = set()
    for child in psutil.Process(gw.proc.pid).children():
        try:
            if "ingest" not in child.cmdline():
                out.add(child.pid)
        except psutil.NoSuchProcess:
            continue
    return out


def answers(gw: Gateway) -> bool:
    r = httpx.post(f"{gw.url}/v1/chat/completions", timeout=10,
                   json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]})
    return r.status_code == 200


def test_a_killed_worker_is_replaced_and_workers_die_with_serve(tmp_path):
    gw = Gateway(write_config(tmp_path), tmp_path / "data", tmp_path / "gw.log", workers=2)
    try:
        wait_for(lambda: len(workers(gw)) == 2, timeout=30, what="two workers")
        first = workers(gw)
        victim = sorted(first)[0]
        psutil.Process(victim).send_signal(signal.SIGKILL)
        wait_for(lambda: len(workers(gw)) == 2 and victim not in workers(gw), timeout=30,
                 what="the killed worker to be replaced")
        assert all(answers(gw) for _ in range(10))
        everyone = [psutil.Process(pid) for pid in workers(gw)] + [gw.ingester()]
        gw.kill()  # kill -9 of serve itself
        wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in everyone),
                 timeout=30, what="the workers and the ingester to exit with serve")
    finally:
        gw.stop()
    again = Gateway(write_config(tmp_path, name="again.yaml"), tmp_path / "data", tmp_path / "gw2.log",
                    workers=2, port=gw.port)  # the port is free again
    again.stop()
