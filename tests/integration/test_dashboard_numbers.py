"""The dashboard's figures describe what they say: latency and TTFT over the same requests (the
successful ones), errors split into client (4xx) and backend (5xx) errors, prompt labels as the
config has them now — from the rollup, from raw rows, and across the rollup upgrade that added
those states (a store with minutes rolled up before it, migrated by a real gateway start)."""

from __future__ import annotations

import time
import uuid

import pytest

from gateway.telemetry.schema import SchemaOptions, render
from tests.support.dashboard import CONFIG, dashboard_gateway, emit, get, make_ctx
from tests.support.telemetry import chdb_client, isolate_telemetry_data  # noqa: F401

# Successes at 100/200/300 ms (TTFT 10/20/30); a 401 answered in 1 ms, a 429 in 2 ms, and a 502
# whose upstream error body arrived after 3 s (so it has a "first byte" time).
OK = ((100, 10), (200, 20), (300, 30))


def rows(now: float, minutes_ago: float, model: str = "mock-gpt") -> list:
    out = [make_ctx(now, minutes_ago=minutes_ago, model=model, latency_ms=lat, ttft_ms=ttft) for lat, ttft in OK]
    out += [make_ctx(now, minutes_ago=minutes_ago, model=model, status=401, latency_ms=1, error_type="invalid_api_key"),
            make_ctx(now, minutes_ago=minutes_ago, model=model, status=429, latency_ms=2, error_type="rate_limited"),
            make_ctx(now, minutes_ago=minutes_ago, model=model, status=502, latency_ms=3500, ttft_ms=3000)]
    out[3].t_first_token = out[4].t_first_token = None  # refused: nothing was ever sent back
    return out


def check_figures(s: dict, n: int = 1) -> None:
    """Summary figures of ``n`` copies of ``rows()``."""
    assert (s["requests"], s["errors"], s["client_errors"], s["backend_errors"]) == (6 * n, 3 * n, 2 * n, n)
    assert (s["client_error_rate"], s["backend_error_rate"], s["error_rate"]) == (round(2 / 6, 4),
                                                                                  round(1 / 6, 4), 0.5)
    # the same three requests: p50 is the middle success in both
    assert s["latency_ms"]["p50"] == pytest.approx(200, rel=0.01)
    assert s["ttft_ms"]["p50"] == pytest.approx(20, rel=0.01)
    assert s["latency_ms"]["p99"] <= 300.1 and s["ttft_ms"]["p99"] <= 30.1


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    database = "t_" + uuid.uuid4().hex[:12]
    srv = dashboard_gateway(database, tmp_path_factory.mktemp("numbers"))
    now = time.time()
    emit(srv, rows(now, 10) + rows(now, 10, model="gpt-4o")[3:])  # + gpt-4o: only errors
    yield srv, now
    srv.__exit__(None, None, None)


def test_latency_and_ttft_cover_the_same_successful_requests_and_errors_are_split(gateway):
    srv, now = gateway
    s = get(srv, "summary", model="mock-gpt")
    assert s["source"] == "rollup"
    check_figures(s)
    both = get(srv, "summary")
    assert (both["client_errors"], both["backend_errors"]) == (4, 2)
    assert both["latency_ms"]["p50"] == pytest.approx(200, rel=0.01)  # errors never pull it down
    # per model and minute: a model that only failed has no latency or TTFT at all
    t = get(srv, "timeseries")
    i = t["t"].index(int(now - 10 * 60) // 60 * 60)
    assert (t["client_errors"][i], t["backend_errors"][i], t["errors"][i]) == (4, 2, 6)
    gpt, mock = t["models"]["gpt-4o"], t["models"]["mock-gpt"]
    assert gpt["requests"][i] == 3 and gpt["latency"]["p50"][i] is None and gpt["ttft"]["p50"][i] is None
    assert mock["latency"]["p50"][i] == pytest.approx(200, rel=0.01)
    assert mock["ttft"]["p50"][i] == pytest.approx(20, rel=0.01)
    b = {r["backend"]: r for r in get(srv, "backends")["backends"]}["mock"]
    assert (b["client_errors"], b["backend_errors"]) == (4, 2) and b["p50_ms"] == pytest.approx(200, rel=0.01)


def _apply_up_to(database: str, version: int) -> None:
    """The schema as a gateway of an earlier release left it: migrations up to ``version``."""
    bootstrap, migrations = render(SchemaOptions(database=database))
    client = chdb_client()
    try:
        for stmt in bootstrap:
            client.command(stmt)
        for m in migrations:
            if m.version <= version:
                for stmt in m.statements:
                    client.command(stmt)
                client.command(f"INSERT INTO `{database}`.schema_migrations (version, name, applied_at) "
                               f"VALUES ({m.version}, 'earlier', now64(3))")
    finally:
        client.close()


def _insert_legacy_rows(database: str, now: float, minutes_ago: float) -> None:
    """``rows()`` inserted as the earlier release did: the version-5 view rolls them up."""
    values = []
    for ctx in rows(now, minutes_ago):
        ttft = "NULL" if ctx.t_first_token is None else f"{(ctx.t_first_token - ctx.t_start) * 1000}"
        values.append(f"(generateUUIDv4(), fromUnixTimestamp64Milli({int(ctx.ts_start * 1000)}), 'acme', "
                      f"'mock-gpt', 'mock', {ctx.status_code}, {(ctx.t_end - ctx.t_start) * 1000}, {ttft})")
    client = chdb_client(database)
    try:
        client.command("INSERT INTO llm_requests (request_id, ts_start, tenant, model_requested, backend, "
                       "status_code, latency_ms, ttft_ms) VALUES " + ", ".join(values))
    finally:
        client.close()


def test_minutes_rolled_up_before_the_upgrade_are_read_from_raw_rows(tmp_path):
    database = "t_" + uuid.uuid4().hex[:12]
    now = time.time()
    _apply_up_to(database, 5)
    _insert_legacy_rows(database, now, 50)
    srv = dashboard_gateway(database, tmp_path)  # migrates to the current schema at start
    try:
        emit(srv, rows(now, 10))
        recent = get(srv, "summary", range="20m")
        assert recent["source"] == "rollup"
        check_figures(recent)
        hour = get(srv, "summary")  # holds minutes the old view rolled up: exact figures from raw rows
        assert hour["source"] == "raw"
        check_figures(hour, 2)
        t = get(srv, "timeseries")
        assert t["source"] == "raw" and sum(t["client_errors"]) == 4
        # usage needs none of the new states: the rollup still answers it
        assert get(srv, "usage")["source"] == "rollup"
    finally:
        srv.__exit__(None, None, None)


PROMPT = """description: labels move
versions:
  - {version: 1, messages: [{role: system, content: one}]}
  - {version: 2, messages: [{role: system, content: two}]}
  - {version: 3, messages: [{role: system, content: three}]}
labels:
  production: 2
  canary: {2: 90, 3: 10}
"""


def test_prompt_versions_show_the_labels_they_have_now(tmp_path):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "triage.yaml").write_text(PROMPT)
    srv = dashboard_gateway("t_" + uuid.uuid4().hex[:12], tmp_path, config=CONFIG + f'prompts: {{dir: "{prompts}"}}\n')
    try:
        now = time.time()
        sent = []
        for version, label in ((1, "production"), (1, "staging"), (2, "production"), (3, "canary")):
            ctx = make_ctx(now, minutes_ago=5, prompt_id="triage", version=version)
            ctx.prompt_label = label  # what the request was selected through at the time
            sent.append(ctx)
        emit(srv, sent)
        versions = {r["version"]: r["labels"] for r in get(srv, "prompts")["versions"]}
    finally:
        srv.__exit__(None, None, None)
    # version 1 was production once, and staging (a label that no longer exists): neither now
    assert versions == {1: [], 2: ["canary 90%", "production"], 3: ["canary 10%", "latest"]}
