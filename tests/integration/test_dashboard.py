"""The ops dashboard over real rows: known requests written through the gateway's own sink into
embedded chDB, then every ``/admin/dashboard/*`` endpoint checked for its figures and shape,
filters included; the page's HTML and security headers; and how the admin key reaches a
browser (login form → HttpOnly session cookie, honoured only where it should be)."""

from __future__ import annotations

import base64
import hashlib
import re
import time
import uuid

import httpx
import pytest

from gateway.dashboard import session
from gateway.dashboard.filters import FilterError, parse_filters, pick_step
from tests.support.dashboard import (
    ADMIN,
    AUTH,
    CONFIG,
    FAILED_NEW,
    FAILED_OLD,
    SLOW_ID,
    dashboard_gateway,
    emit,
    get,
    known_rows,
)
from tests.support.gateway import serve
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml  # noqa: F401


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """One gateway with the known rows (module-scoped: the rows are read-only for these tests)."""
    database = "t_" + uuid.uuid4().hex[:12]
    srv = dashboard_gateway(database, tmp_path_factory.mktemp("dash"))
    now = time.time()
    rows, feedback = known_rows(now)
    emit(srv, rows, feedback)
    yield srv, now
    srv.__exit__(None, None, None)


MOCK_COST = lambda p, c: (p * 1.0 + c * 2.0) / 1e6  # noqa: E731
GPT4O_COST = lambda p, c: (p * 2.5 + c * 10.0) / 1e6  # noqa: E731


def test_summary_totals_and_filters(seeded):
    srv, now = seeded
    s = get(srv, "summary")
    assert s["source"] == "rollup"
    assert (s["requests"], s["errors"]) == (10, 2) and s["error_rate"] == 0.2
    assert s["rps"] == pytest.approx(10 / 3600, abs=1e-4)
    assert (s["prompt_tokens"], s["completion_tokens"]) == (1650, 165)
    assert s["cost_usd"] == pytest.approx(MOCK_COST(650, 65) + GPT4O_COST(1000, 100), abs=1e-6)
    assert s["latency_ms"]["p99"] > 500 and s["latency_ms"]["p50"] < s["latency_ms"]["p95"]
    assert set(s["latency_ms"]) == {"p50", "p90", "p95", "p99"}
    assert s["range"]["to"] - s["range"]["from"] == 3600_000 and s["range"]["step_s"] == 60

    globex = get(srv, "summary", tenant="globex")
    assert (globex["requests"], globex["errors"], globex["prompt_tokens"]) == (2, 1, 1000)
    assert globex["cost_usd"] == pytest.approx(GPT4O_COST(1000, 100), abs=1e-7)
    assert get(srv, "summary", model="gpt-4o", backend="openai")["requests"] == 2
    assert get(srv, "summary", backend="nope")["requests"] == 0
    day = get(srv, "summary", range="2d")
    assert day["requests"] == 11 and day["range"]["step_s"] == 1800

    by_prompt = get(srv, "summary", prompt="support")
    assert by_prompt["source"] == "raw" and (by_prompt["requests"], by_prompt["prompt_tokens"]) == (3, 600)
    v1 = get(srv, "summary", prompt="support@1")
    assert (v1["requests"], v1["completion_tokens"]) == (2, 30)
    assert v1["latency_ms"]["p50"] == pytest.approx(200, abs=100.1)
    # an explicit window: from/to in epoch ms
    window = get(srv, "summary", **{"from": int((now - 35 * 60) * 1000), "to": int((now - 25 * 60) * 1000)})
    assert window["requests"] == 1 and window["latency_ms"]["p50"] == pytest.approx(900, rel=0.01)


def test_timeseries_buckets_and_percentiles_by_model(seeded):
    srv, now = seeded
    d = get(srv, "timeseries")
    assert d["step_s"] == 60 and len(d["t"]) in (60, 61) and d["t"] == sorted(d["t"])
    assert all(b - a == 60 for a, b in zip(d["t"], d["t"][1:]))
    assert len(d["requests"]) == len(d["rps"]) == len(d["errors"]) == len(d["error_rate"]) == len(d["t"])
    assert sum(d["requests"]) == 10 and sum(d["errors"]) == 2
    i30 = d["t"].index(int(now - 30 * 60) // 60 * 60)
    assert d["requests"][i30] == 1 and d["error_rate"][i30] == 0.0
    i5 = d["t"].index(int(now - 5 * 60) // 60 * 60)
    assert d["errors"][i5] == 1 and d["error_rate"][i5] == 1.0
    assert d["rps"][i5] == pytest.approx(1 / 60, abs=1e-4)
    assert d["model_order"] == ["mock-gpt", "gpt-4o"]
    gpt = d["models"]["gpt-4o"]
    assert gpt["latency"]["p50"][i30] == pytest.approx(900, rel=0.01)
    assert gpt["ttft"]["p99"][i30] == pytest.approx(400, rel=0.01)
    assert gpt["latency"]["p95"][i5] is None  # no gpt-4o request in that minute
    # raw rows for a prompt filter, same shape
    p = get(srv, "timeseries", prompt="support", range="6h")
    assert p["source"] == "raw" and p["step_s"] == pick_step(6 * 3600) == 300
    assert sum(p["requests"]) == 3 and p["model_order"] == ["mock-gpt"]


def test_usage_by_tenant_and_model(seeded):
    srv, _ = seeded
    u = get(srv, "usage")
    tenants = {r["name"]: r for r in u["by_tenant"]}
    assert set(tenants) == {"acme", "globex"}
    assert (tenants["acme"]["requests"], tenants["acme"]["prompt_tokens"], tenants["acme"]["completion_tokens"]) \
        == (8, 650, 65)
    assert tenants["acme"]["cost_usd"] == pytest.approx(MOCK_COST(650, 65), abs=1e-7)
    assert [r["name"] for r in u["by_tenant"]] == ["globex", "acme"]  # highest cost first
    models = {r["name"]: r for r in u["by_model"]}
    assert models["gpt-4o"]["requests"] == 2 and models["mock-gpt"]["prompt_tokens"] == 650
    only = get(srv, "usage", model="gpt-4o")
    assert [r["name"] for r in only["by_tenant"]] == ["globex"]
    prompt = get(srv, "usage", prompt="support")
    assert prompt["source"] == "raw" and prompt["by_model"][0]["prompt_tokens"] == 600


def test_cache_panel(seeded):
    srv, now = seeded
    c = get(srv, "cache")
    assert (c["hits"], c["misses"], c["coalesced"], c["bypassed"]) == (2, 6, 1, 1)
    assert c["hit_ratio"] == round(2 / 9, 4) and c["saved_ms"] == 400.0 and c["requests"] == 10
    assert c["by_status"] == {"bypass": 1, "coalesced": 1, "hit": 2, "miss": 6}
    i10 = c["t"].index(int(now - 10 * 60) // 60 * 60)
    assert c["hit_ratio_series"][i10] == round(2 / 3, 4)  # two hits and one coalesced looked up then
    assert c["hit_ratio_series"][c["t"].index(int(now - 30 * 60) // 60 * 60)] == 0.0
    assert get(srv, "cache", tenant="globex")["hit_ratio"] == 0.0


def test_backends_panel_and_live_state(seeded):
    srv, _ = seeded
    b = {r["backend"]: r for r in get(srv, "backends")["backends"]}
    assert (b["openai"]["requests"], b["openai"]["errors"], b["openai"]["error_rate"]) == (2, 1, 0.5)
    assert (b["openai"]["attempts"], b["openai"]["failed_attempts"]) == (2, 1)
    assert (b["mock"]["requests"], b["mock"]["attempts"]) == (6, 6)  # a coalesced row names the leader's backend
    assert b["openai"]["p50_ms"] is not None and set(b["mock"]) >= {"p95_ms", "ttft_p50_ms", "attempt_p95_ms"}
    assert "" in b and b[""]["attempts"] == 0  # cache hits: no backend, no attempt
    only = get(srv, "backends", backend="openai")["backends"]
    assert [r["backend"] for r in only] == ["openai"]
    live = httpx.get(f"{srv.url}/admin/backends", headers=AUTH).json()
    assert {x["name"] for x in live["backends"]} == {"mock", "openai"}


def test_slowest_and_failed_requests_with_details(seeded):
    srv, _ = seeded
    slow = get(srv, "requests", kind="slowest", limit=3)["requests"]
    assert [r["latency_ms"] for r in slow] == [900.0, 500.0, 300.0]
    top = slow[0]
    assert top["client_request_id"] == SLOW_ID and top["model"] == "gpt-4o" and top["ttft_ms"] == 400.0
    assert set(top) >= {"request_id", "ts", "tenant", "backend", "status_code", "prompt_tokens", "cost_usd"}
    failed = get(srv, "requests", kind="failed")["requests"]
    assert [r["client_request_id"] for r in failed] == [FAILED_NEW, FAILED_OLD]  # newest first
    assert failed[1]["error_message"] == "upstream said no" and failed[0]["error_type"] == "rate_limited"
    assert get(srv, "requests", kind="failed", tenant="acme")["requests"][0]["status_code"] == 429

    detail = get(srv, f"request/{top['request_id']}", ts=top["ts"])
    assert detail["request"]["latency_ms"] == pytest.approx(900.0) and detail["request"]["client_request_id"] == SLOW_ID
    assert [a["backend"] for a in detail["attempts"]] == ["openai"] and detail["feedback"] == []
    by_client_id = get(srv, "request/sup-2-a")
    assert by_client_id["request"]["prompt_version"] == 2
    assert sorted(f["score"] for f in by_client_id["feedback"]) == [0.5, 1.0]
    missing = httpx.get(f"{srv.url}/admin/dashboard/request/{uuid.uuid4()}", headers=AUTH)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = httpx.get(f"{srv.url}/admin/dashboard/requests", params={"kind": "nope"}, headers=AUTH)
    assert bad.status_code == 400


def test_prompt_versions_side_by_side(seeded):
    srv, _ = seeded
    v = {(r["prompt"], r["version"]): r for r in get(srv, "prompts")["versions"]}
    assert set(v) == {("support", 1), ("support", 2)}
    one, two = v[("support", 1)], v[("support", 2)]
    assert (one["requests"], one["mean_prompt_tokens"], one["mean_completion_tokens"]) == (2, 150.0, 15.0)
    assert (one["feedback"], one["mean_score"]) == (2, 0.5) and (two["feedback"], two["mean_score"]) == (2, 0.75)
    assert one["cost_usd"] == pytest.approx(MOCK_COST(300, 30), abs=1e-7) and one["error_rate"] == 0.0
    assert two["p50_ms"] == pytest.approx(500, rel=0.01)
    assert [r["version"] for r in get(srv, "prompts", prompt="support@2")["versions"]] == [2]
    assert get(srv, "prompts", tenant="globex")["versions"] == []


def test_options_list_what_the_range_holds(seeded):
    srv, _ = seeded
    o = get(srv, "options", tenant="globex")  # other filters do not narrow the pickers
    assert o["tenants"] == ["acme", "globex"] and o["models"] == ["gpt-4o", "mock-gpt"]
    assert o["backends"] == ["mock", "openai"]
    assert o["prompts"] == [{"prompt": "support", "versions": [1, 2]}]
    assert "old" in get(srv, "options", range="2d")["tenants"]


def test_bad_filters_and_parsing():
    assert parse_filters({"range": "15m"}, now=1000).from_ms == 1000_000 - 900_000
    f = parse_filters({"from": "1000", "to": "61000", "prompt": "p@3", "tenant": " a "})
    assert (f.from_ms, f.to_ms, f.prompt, f.version, f.tenant, f.step_s) == (1000, 61000, "p", 3, "a", 60)
    for bad in ({"range": "soon"}, {"from": "5", "to": "4"}, {"range": "100d"}, {"prompt": "p@x"},
                {"tenant": "x" * 300}, {"to": "abc"}):
        with pytest.raises(FilterError):
            parse_filters(bad)
    assert pick_step(3600) == 60 and pick_step(86400) == 900 and pick_step(30 * 86400) == 21600
    # the SQL carries values only as parameters
    where = parse_filters({"tenant": "x' OR 1=1 --", "model": "m"}).raw_where()
    assert "x'" not in where and "{tenant:String}" in where and "{model:String}" in where


def test_endpoints_refuse_bad_input_and_answer_errors_in_openai_shape(seeded):
    srv, _ = seeded
    r = httpx.get(f"{srv.url}/admin/dashboard/summary", params={"range": "forever"}, headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_filter"
    r = httpx.get(f"{srv.url}/admin/dashboard/drift", params={"bins": "99"}, headers=AUTH)
    assert r.status_code == 400
    r = httpx.get(f"{srv.url}/admin/dashboard/summary", params={"tenant": "x' OR 1=1 --"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["requests"] == 0  # a value, never SQL


def test_admin_key_guards_every_endpoint_and_the_cookie_is_narrow(seeded):
    srv, _ = seeded
    for path in ("/admin/dashboard/summary", "/admin/dashboard/drift", "/admin/dashboard/request/x"):
        assert httpx.get(srv.url + path).status_code == 401
        assert httpx.get(srv.url + path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    # the page without a key: the login form
    page = httpx.get(f"{srv.url}/dashboard")
    assert page.status_code == 401 and '<form method="post" action="/dashboard/login"' in page.text
    assert "set-cookie" not in page.headers
    wrong = httpx.post(f"{srv.url}/dashboard/login", data={"key": "nope"})
    assert wrong.status_code == 401 and "not the admin key" in wrong.text and "set-cookie" not in wrong.headers
    ok = httpx.post(f"{srv.url}/dashboard/login", data={"key": ADMIN})
    assert ok.status_code == 303 and ok.headers["location"] == "/dashboard"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie and "Max-Age=43200" in cookie
    assert ADMIN not in cookie
    value = ok.cookies[session.COOKIE]
    jar = {session.COOKIE: value}
    with httpx.Client(base_url=srv.url, cookies=jar) as c:
        assert c.get("/dashboard").status_code == 200
        dash = {"X-Dashboard": "1"}
        assert c.get("/admin/dashboard/summary", headers=dash).status_code == 200
        assert c.get("/admin/backends", headers=dash).status_code == 200
        assert c.get("/admin/telemetry", headers=dash).status_code == 200
        assert c.get("/admin/dashboard/summary").status_code == 401  # no X-Dashboard: a link or an <img>
        assert c.get("/admin/config", headers=dash).status_code == 401  # not a path the page uses
        assert c.post("/admin/query", json={"sql": "SELECT 1"}, headers=dash).status_code == 401  # never a POST
        assert c.post("/admin/telemetry/flush", headers=dash).status_code == 401
    with httpx.Client(base_url=srv.url, cookies={session.COOKIE: value[:-1] + ("0" if value[-1] != "0" else "1")}) as c:
        assert c.get("/admin/dashboard/summary", headers={"X-Dashboard": "1"}).status_code == 401
        assert c.get("/dashboard").status_code == 401
    # the admin key is never taken from the address (history, logs): the form is answered instead
    via_query = httpx.get(f"{srv.url}/dashboard", params={"key": ADMIN})
    assert via_query.status_code == 400 and session.COOKIE not in via_query.cookies
    assert "not accepted in the address" in via_query.text and via_query.headers["Referrer-Policy"] == "no-referrer"
    with httpx.Client(base_url=srv.url, cookies=jar) as c:
        out = c.post("/dashboard/logout")
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    # a header works for the page too (curl, a reverse proxy injecting it)
    assert httpx.get(f"{srv.url}/dashboard", headers=AUTH).status_code == 200


def test_session_tokens_expire_and_follow_the_admin_key():
    token = session.make_token("k1", now=1000)
    assert session.token_valid(token, "k1", now=1000 + 3600)
    assert not session.token_valid(token, "k1", now=1000 + session.SESSION_S + 1)  # expired
    assert not session.token_valid(token, "k2", now=1001)  # the key changed: every session ends
    assert not session.token_valid(token.replace("v2.", "v1."), "k1", now=1001)
    _, expiry, sid, mac = token.split(".")
    assert not session.token_valid(f"v2.{int(expiry) + 999}.{sid}.{mac}", "k1", now=1001)  # extended: bad MAC
    assert not session.token_valid(f"v2.{expiry}.another-id.{mac}", "k1", now=1001)  # another session: bad MAC
    assert session.make_token("k1").split(".")[2] != session.make_token("k1").split(".")[2]  # one id each
    assert not session.token_valid("", "k1") and not session.token_valid(token, None)
    assert session.key_matches("k1", "k1") and not session.key_matches("k1", "k2") and not session.key_matches("", "")


def test_page_is_self_contained_with_a_strict_csp(seeded):
    srv, _ = seeded
    resp = httpx.get(f"{srv.url}/dashboard", headers=AUTH)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    page = resp.text
    for panel in ("p-summary", "p-traffic", "p-latency", "p-ttft", "p-cache", "p-usage-tenant", "p-usage-model",
                  "p-backends", "p-slowest", "p-failed", "p-prompts", "p-drift"):
        assert f'id="{panel}"' in page
    for control in ("range", "tenant", "model", "backend", "prompt", "refresh"):
        assert f'name="{control}"' in page
    assert 'data-auth="header"' in page and "uPlot" in page and "/admin/dashboard/" in page
    # nothing is loaded from elsewhere: no src/href attributes at all, no import, no CDN
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=\"(?!data:)", page)
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 4  # uPlot, the Bias panel (it registers its loader first), the page, Evaluations
    for body in scripts:  # each inline script is allowed by its exact hash, nothing else runs
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["Cache-Control"] == "no-store"


def test_loopback_without_admin_key_needs_no_login(tdb, tmp_path):
    srv = dashboard_gateway(tdb, tmp_path, admin_key=None)
    try:
        page = httpx.get(f"{srv.url}/dashboard")
        assert page.status_code == 200 and 'data-auth="open"' in page.text
        assert httpx.get(f"{srv.url}/admin/dashboard/summary").json()["requests"] == 0
        assert httpx.post(f"{srv.url}/dashboard/login", data={"key": "x"}).status_code == 303
        empty = get(srv, "drift")
        assert empty["level"] == "n/a" and not empty["flagged"]
        assert all(c["level"] == "n/a" for c in empty["checks"])
    finally:
        srv.__exit__(None, None, None)


def _grafana_sql(sql: str, selected: dict[str, list[str]]) -> str:
    """The plugin's macros and variables expanded as Grafana would (time range: the last day)."""
    def conditional_all(m: re.Match) -> str:
        expr, var = m.group(1), m.group(2)
        return expr if selected.get(var) else "1 = 1"

    sql = re.sub(r"\$__conditionalAll\((.+?), \$(\w+)\)", conditional_all, sql)
    for var, values in selected.items():
        sql = sql.replace("${" + var + ":singlequote}", ", ".join(f"'{v}'" for v in values))
    sql = re.sub(r"\$__timeFilter\(([\w.]+)\)",
                 r"\1 >= toDateTime(now() - INTERVAL 1 DAY) AND \1 <= toDateTime(now())", sql)
    sql = re.sub(r"\$__timeInterval\(([\w.]+)\)", r"toStartOfInterval(toDateTime(\1), INTERVAL 300 second)", sql)
    return sql.replace("$__interval_s", "300")


def test_grafana_dashboard_queries_run_on_real_rows(seeded):
    """config/grafana: the dashboard JSON is well formed, every panel targets the ClickHouse
    plugin, and every query (macros expanded) runs read-only over the known rows."""
    import orjson

    from tests.support.telemetry import REPO

    srv, _ = seeded
    dash = orjson.loads((REPO / "config" / "grafana" / "dashboards" / "llm-gateway.json").read_bytes())
    assert dash["uid"] == "llm-gateway-ops" and dash["title"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["query"] == "grafana-clickhouse-datasource"
    assert {"tenant", "model", "backend"} <= set(variables)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 12
    titles = " | ".join(p["title"] for p in dash["panels"])
    for needed in ("Requests/s", "Latency p50 / p95 / p99 by model", "TTFT", "by tenant", "by model", "Cache hit ratio",
                   "Backends", "Slowest", "failed", "Prompt versions"):
        assert needed in titles
    results = {}
    for panel in dash["panels"]:
        target, = panel["targets"]
        assert panel["datasource"]["type"] == target["datasource"]["type"] == "grafana-clickhouse-datasource"
        assert target["datasource"]["uid"] == "${datasource}" and target["editorType"] == "sql"
        for selected in ({}, {"tenant": ["globex"]}):
            sql = _grafana_sql(target["rawSql"], selected)
            assert "$" not in sql, sql
            resp = httpx.post(f"{srv.url}/admin/query", json={"sql": sql, "format": "json"}, headers=AUTH, timeout=60)
            assert resp.status_code == 200, (panel["title"], resp.text)
            results[(panel["title"], bool(selected))] = resp.json()["data"]
    assert results[("Requests", False)][0]["requests"] in (10, "10")
    assert results[("Requests", True)][0]["requests"] in (2, "2")
    tenants = {r["tenant"]: r for r in results[("Tokens and cost by tenant", False)]}
    assert int(tenants["acme"]["tokens_in"]) == 650
    prompts = {(r["prompt"], r["version"]): r for r in results[("Prompt versions side by side", False)]}
    assert prompts[("support", 1)]["mean_score"] == 0.5
    assert [r["status_code"] for r in results[("Most recent failed requests", False)]] == [429, 500]


def test_store_down_answers_503_with_the_reason(tmp_path):
    """A ClickHouse server that does not answer: every panel says so (503 ``query_failed``), the
    page itself still loads."""
    from tests.support.telemetry import free_port

    dsn = f"http://default:pw-not-shown@127.0.0.1:{free_port()}/logs"
    text = CONFIG + f"server: {{admin_key: {ADMIN}}}\n" + telemetry_yaml(dsn, "logs", tmp_path / "spool")
    srv = serve(text)
    srv.__enter__()
    try:
        for name in ("summary", "timeseries", "drift", "request/abc"):
            r = httpx.get(f"{srv.url}/admin/dashboard/{name}", headers=AUTH, timeout=60)
            assert r.status_code == 503 and r.json()["error"]["code"] == "query_failed", r.text
            assert "pw-not-shown" not in r.text
        assert httpx.get(f"{srv.url}/dashboard", headers=AUTH).status_code == 200
    finally:
        srv.__exit__(None, None, None)
