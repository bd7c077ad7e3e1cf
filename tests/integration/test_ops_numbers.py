"""The numbers ops people read: rows of refused requests, hit ratios, unpriced counts, refusals.

A gateway with keys, limits, the cache and embedded chDB is driven with the official OpenAI SDK
over real HTTP; the rows it writes are read back with SQL, through a saved query and through the
dashboard's JSON, and the Prometheus scrape is parsed. Requests refused before the cache (400,
401, 403, 404, 429) carry cache status ``none`` and count in no hit ratio; rows refused by the
access stage keep the caller (tenant, key id, key metadata).
"""

from __future__ import annotations

import hashlib
import re

import httpx
import openai
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.proxy.server import BackgroundServer
from tests.support.gateway import serve
from tests.support.telemetry import chdb_client, chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml  # noqa: F401
from tests.support.telemetry_rows import select

KEY_A = "sk-gw-numbers-a-0123456789abcdef"
KEY_B = "sk-gw-numbers-b-0123456789abcdef"
MSG = [{"role": "user", "content": "How many?"}]


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def config(extra: str = "") -> str:
    """``gpt-test`` (priced), ``gpt-free`` and ``other`` (no price) on the mock backend; team-a
    may use ``gpt-*`` only, at 3 requests a minute; team-b anything."""
    return f"""
backends:
  mock: {{type: mock, mock: {{ttft_ms: 1, itl_ms: 1, tokens: 4, chunk_tokens: 2}}}}
models:
  gpt-test: {{targets: [{{backend: mock}}]}}
  gpt-free: {{targets: [{{backend: mock}}]}}
  other: {{targets: [{{backend: mock}}]}}
pricing:
  models:
    gpt-test: {{input: 1.0, output: 2.0}}
cache: {{enabled: true}}
keys:
  - {{tenant: team-a, id: team-a-main, sha256: {sha(KEY_A)}, models: ["gpt-*"], rpm: 3,
      metadata: {{cost_center: cc-42}}}}
  - {{tenant: team-b, id: team-b-main, sha256: {sha(KEY_B)}}}
{extra}"""


def client(srv: BackgroundServer, key: str | None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key=key or "no-key", max_retries=0)


@pytest.fixture
def logged(tmp_path, tdb):
    """A gateway writing rows to database ``tdb`` after the traffic below; yields (srv, rows by
    client request id)."""
    text = config() + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool", flush_interval_ms=50)
    srv = serve(text)
    srv.__enter__()
    try:
        a, nobody = client(srv, KEY_A), client(srv, None)
        ask = dict(model="gpt-test", messages=MSG, temperature=0)
        # answered: a cache miss, then a hit; a model without a price (not cacheable: no temperature 0)
        miss = a.chat.completions.with_raw_response.create(**ask, extra_headers={"x-request-id": "miss"})
        hit = a.chat.completions.with_raw_response.create(**ask, extra_headers={"x-request-id": "hit"})
        assert (miss.headers["x-gateway-cache"], hit.headers["x-gateway-cache"]) == ("miss", "hit")
        a.chat.completions.create(model="gpt-free", messages=MSG, extra_headers={"x-request-id": "free"})
        # refused before the cache
        with pytest.raises(openai.PermissionDeniedError):  # exists, but not for this key
            a.chat.completions.create(model="other", messages=MSG, extra_headers={"x-request-id": "forbidden"})
        with pytest.raises(openai.NotFoundError):
            a.chat.completions.create(model="nope-model", messages=MSG, extra_headers={"x-request-id": "missing"})
        with pytest.raises(openai.RateLimitError):  # the 4th request this minute
            a.chat.completions.create(**ask, extra_headers={"x-request-id": "limited"})
        with pytest.raises(openai.AuthenticationError):
            nobody.chat.completions.create(**ask, extra_headers={"x-request-id": "anonymous"})
        bad = httpx.post(f"{srv.url}/v1/chat/completions", content=b"{not json",
                         headers={"Authorization": f"Bearer {KEY_A}", "x-request-id": "malformed"})
        assert bad.status_code == 400
        resp = httpx.post(f"{srv.url}/admin/telemetry/flush", timeout=60)
        assert resp.status_code == 200 and resp.json()["flushed"], resp.text
        rows = select(tdb, "SELECT client_request_id AS id, tenant, api_key_id, metadata, status_code, "
                           "error_type, cache_status, cost_usd FROM llm_requests")
        yield srv, {r["id"]: r for r in rows}
    finally:
        srv.__exit__(None, None, None)


REFUSED = {"forbidden": 403, "missing": 404, "limited": 429, "anonymous": 401, "malformed": 400}


def test_refused_requests_never_reached_the_cache_and_keep_their_caller(logged):
    _, rows = logged
    assert set(rows) == {"miss", "hit", "free", *REFUSED}
    assert (rows["miss"]["cache_status"], rows["hit"]["cache_status"], rows["free"]["cache_status"]) == \
        ("miss", "hit", "bypass")
    for rid, status in REFUSED.items():
        assert (rows[rid]["status_code"], rows[rid]["cache_status"]) == (status, "none"), rows[rid]
    # once the key is known the row names its caller, whatever refused the request afterwards
    for rid in ("forbidden", "missing", "limited", "miss", "hit"):
        r = rows[rid]
        assert (r["tenant"], r["api_key_id"], r["metadata"]) == ("team-a", "team-a-main", {"cost_center": "cc-42"})
    assert rows["forbidden"]["error_type"] == "model_not_allowed"
    assert rows["missing"]["error_type"] == "model_not_found"
    assert rows["anonymous"]["tenant"] == "" and rows["anonymous"]["api_key_id"] != "team-a-main"


def test_hit_ratios_count_only_requests_that_reached_the_cache(logged):
    srv, _ = logged
    cache = httpx.get(f"{srv.url}/admin/dashboard/cache", timeout=60).json()
    assert (cache["hits"], cache["misses"], cache["bypassed"], cache["not_reached"]) == (1, 1, 1, 5)
    assert cache["hit_ratio"] == 0.5 and cache["by_status"]["none"] == 5
    assert [x for x in cache["hit_ratio_series"] if x is not None] == [0.5]
    # Prometheus: refused requests are labelled cache_status="none", so a ratio over
    # hit / (hit + miss + coalesced) sees the same 50 %
    scrape = httpx.get(f"{srv.url}/metrics", timeout=30).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(scrape):
        if family.name == "llm_gateway_requests":
            for s in family.samples:
                if s.name.endswith("_total"):
                    status = s.labels["cache_status"]
                    counts[status] = counts.get(status, 0) + s.value
    assert counts == {"miss": 1, "hit": 1, "bypass": 1, "none": 5}
    assert counts["hit"] / (counts["hit"] + counts["miss"]) == 0.5


def test_cost_by_tenant_counts_only_answered_requests_without_a_price_as_unpriced(logged):
    srv, rows = logged
    # the refused "other" and "nope-model" rows have no price either, but nothing was used
    assert rows["forbidden"]["cost_usd"] is None and rows["missing"]["cost_usd"] is None
    resp = httpx.post(f"{srv.url}/admin/query", json={"saved": "cost-by-tenant-daily", "format": "jsonl"}, timeout=60)
    assert resp.status_code == 200, resp.text
    by_tenant = {r["tenant"]: r for r in map(orjson.loads, resp.content.splitlines())}
    assert (by_tenant["team-a"]["requests"], by_tenant["team-a"]["unpriced"]) == (6, 1)  # gpt-free only
    assert by_tenant[""]["unpriced"] == 0


def test_a_restricted_key_asking_for_a_model_that_does_not_exist_gets_404(tmp_path):
    routed = """routes:
  - {name: canary, match: {model: "canary-*"}, targets: [{backend: mock}]}
telemetry: {enabled: false}
"""
    with serve(config(routed)) as srv:
        a = client(srv, KEY_A)
        with pytest.raises(openai.NotFoundError) as info:
            a.chat.completions.create(model="claude-does-not-exist", messages=MSG)
        err = info.value.body
        assert (err["code"], err["param"], err["type"]) == ("model_not_found", "model", "invalid_request_error")
        assert "does not exist" in err["message"] and "gpt-test" in err["message"]
        with pytest.raises(openai.PermissionDeniedError) as info:  # it exists: the key may not use it
            a.chat.completions.create(model="other", messages=MSG)
        assert info.value.body["code"] == "model_not_allowed"
        with pytest.raises(openai.PermissionDeniedError):  # a name a routing rule serves exists too
            a.chat.completions.create(model="canary-1", messages=MSG)
        assert client(srv, KEY_B).chat.completions.create(model="canary-1", messages=MSG).choices
        # the same for GET /v1/models/{id}
        with pytest.raises(openai.NotFoundError) as info:
            a.models.retrieve("claude-does-not-exist")
        assert info.value.body["code"] == "model_not_found"
        with pytest.raises(openai.PermissionDeniedError):
            a.models.retrieve("other")
        assert a.models.retrieve("gpt-test").id == "gpt-test"


def test_budget_refusals_carry_rate_limit_headers_and_readable_amounts(tmp_path):
    # ~10 tokens at $10 per 1M tokens: about $0.0001 a request; the budget is $0.00005 a day
    text = config("telemetry: {enabled: false}\n").replace("rpm: 3,", "budget_usd: {day: 0.00005},").replace(
        "    gpt-test: {input: 1.0, output: 2.0}", "    gpt-free: {input: 10.0, output: 10.0}")
    with serve(text) as srv:
        a = client(srv, KEY_A)
        a.chat.completions.create(model="gpt-free", messages=MSG)  # crosses the line: served
        spent = httpx.get(f"{srv.url}/admin/access").json()["keys"][0]["usage"]["spent_usd_day"]
        assert 0.00005 < spent < 0.01
        with pytest.raises(openai.RateLimitError) as info:
            a.chat.completions.create(model="gpt-free", messages=MSG)
    err, headers = info.value.body, info.value.response.headers
    assert (err["code"], err["type"]) == ("budget_exceeded", "insufficient_quota")
    m = re.search(r"\$(\d+\.\d+) of \$(\d+\.\d+) spent", err["message"])
    assert m, err["message"]
    assert float(m.group(1)) == pytest.approx(spent, rel=0.01) and m.group(2) == "0.00005"
    assert "per day" in err["message"] and "$0.00 " not in err["message"]
    assert headers["x-ratelimit-limit-budget"] == "0.00005" and headers["x-ratelimit-remaining-budget"] == "0.00"
    assert re.fullmatch(r"\d+h\d+m\d+s|\d+m\d+s|[\d.]+m?s", headers["x-ratelimit-reset-budget"])
    assert int(headers["retry-after"]) >= 1
