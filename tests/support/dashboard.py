"""Telemetry rows and a dashboard-enabled gateway shared by the dashboard and drift tests."""

from __future__ import annotations

import uuid

import httpx

from gateway.core.context import RequestContext, Usage
from gateway.prompts.tables import feedback_row
from gateway.proxy.server import BackgroundServer
from gateway.telemetry import SINK
from gateway.telemetry.record import to_uuid
from tests.support.gateway import serve
from tests.support.telemetry import chdb_dsn, telemetry_yaml

ADMIN = "adm-dash-key-1"
AUTH = {"Authorization": f"Bearer {ADMIN}"}

CONFIG = """
backends:
  mock: {type: mock, mock: {ttft_ms: 1, itl_ms: 1, tokens: 4, chunk_tokens: 2}}
  openai: {type: openai, base_url: "http://127.0.0.1:9/v1", api_key: sk-not-used}
models:
  mock-gpt: {targets: [{backend: mock}]}
  gpt-4o: {targets: [{backend: openai}]}
pricing:
  models:
    mock-gpt: {input: 1.0, output: 2.0}
"""


def make_ctx(now: float, *, minutes_ago: float, tenant: str = "acme", model: str = "mock-gpt", backend: str = "mock",
             status: int = 200, latency_ms: float = 100.0, ttft_ms: float | None = None, prompt: int = 0,
             completion: int = 0, cache: str = "miss", saved_ms: float | None = None, prompt_id: str = "",
             version: int | None = None, finish: str = "stop", rid: str | None = None, error_type: str = "",
             error_message: str = "") -> RequestContext:
    """A finished request as the handlers leave it (times relative to ``t_start``)."""
    t0 = 1000.0
    hit = cache == "hit"
    return RequestContext(
        request_id=rid or str(uuid.uuid4()), endpoint="chat/completions", t_start=t0, ts_start=now - minutes_ago * 60,
        model_requested=model, backend=backend, provider="openai", status_code=status, tenant=tenant, stream=True,
        t_upstream_start=None if hit else t0 + 0.001,
        t_first_token=t0 + (ttft_ms if ttft_ms is not None else latency_ms / 2) / 1000, t_end=t0 + latency_ms / 1000,
        usage=Usage(prompt_tokens=prompt, completion_tokens=completion), cache_status=cache, cache_saved_ms=saved_ms,
        prompt_id=prompt_id, prompt_version=version, finish_reason=finish,
        error_type=error_type or ("upstream_http_error" if status >= 400 else ""), error_message=error_message)


def dashboard_gateway(database: str, tmp_path, admin_key: str | None = ADMIN, config: str = CONFIG) -> BackgroundServer:
    server = f"server: {{admin_key: {admin_key}}}\n" if admin_key else ""
    text = config + server + telemetry_yaml(chdb_dsn(), database, tmp_path / "spool", flush_interval_ms=50)
    srv = serve(text)
    srv.__enter__()
    return srv


def emit(srv: BackgroundServer, contexts: list, feedback: list | None = None) -> None:
    """Hand rows to the gateway's own sinks (on its loop) and wait until they are written."""
    async def run():
        for ctx in contexts:
            srv.app[SINK].emit(ctx)
        for item in feedback or ():
            srv.app[SINK].emit_row(*item)

    srv.call(run())
    resp = httpx.post(f"{srv.url}/admin/telemetry/flush", headers=AUTH, timeout=60)
    assert resp.status_code == 200 and resp.json()["flushed"], resp.text


def score(rid: str, value: float, now: float) -> tuple:
    request_uuid, client_rid = to_uuid(rid)
    return feedback_row(str(uuid.uuid4()), now, request_uuid, client_rid, value, "", "", "", "")


# The known rows: 10 requests in the last hour (+1 a day ago, outside the default range).
SLOW_ID, FAILED_NEW, FAILED_OLD = "req-slow-1", "req-fail-new", "req-fail-old"


def known_rows(now: float) -> tuple[list, list]:
    rows = [
        make_ctx(now, minutes_ago=50, latency_ms=100, prompt=100, completion=10, prompt_id="support", version=1,
                 rid="sup-1-a"),
        make_ctx(now, minutes_ago=50, latency_ms=300, prompt=200, completion=20, prompt_id="support", version=1,
                 rid="sup-1-b"),
        make_ctx(now, minutes_ago=40, latency_ms=500, prompt=300, completion=30, prompt_id="support", version=2,
                 rid="sup-2-a", finish="length"),
        make_ctx(now, minutes_ago=30, model="gpt-4o", backend="openai", latency_ms=900, ttft_ms=400, prompt=1000,
                 completion=100, tenant="globex", rid=SLOW_ID),
        make_ctx(now, minutes_ago=20, model="gpt-4o", backend="openai", status=500, latency_ms=50, tenant="globex",
                 rid=FAILED_OLD, error_message="upstream said no"),
        make_ctx(now, minutes_ago=5, status=429, latency_ms=20, tenant="acme", rid=FAILED_NEW,
                 error_type="rate_limited"),
        make_ctx(now, minutes_ago=10, latency_ms=5, cache="hit", saved_ms=250.0, backend="", finish="stop"),
        make_ctx(now, minutes_ago=10, latency_ms=6, cache="hit", saved_ms=150.0, backend="", finish="stop"),
        make_ctx(now, minutes_ago=10, latency_ms=30, cache="coalesced", backend="mock"),
        make_ctx(now, minutes_ago=10, latency_ms=200, cache="bypass", prompt=50, completion=5),
        make_ctx(now, minutes_ago=24 * 60, latency_ms=9999, prompt=7, completion=7, tenant="old"),  # outside 1 h
    ]
    feedback = [score("sup-1-a", 1.0, now), score("sup-1-b", 0.0, now), score("sup-2-a", 1.0, now),
                score("sup-2-a", 0.5, now)]
    return rows, feedback


def get(srv, name: str, **params) -> dict:
    resp = httpx.get(f"{srv.url}/admin/dashboard/{name}", params=params, headers=AUTH, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["Cache-Control"] == "no-store"
    return resp.json()
