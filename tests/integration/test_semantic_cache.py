"""Semantic cache through real HTTP: a gateway on loopback with embedded telemetry (chDB), the
built-in mock backend answering chat and embeddings (its embeddings are a hashed bag of words:
texts sharing most words are near, unrelated ones far), the official ``openai`` SDK as client.

Entries reach ClickHouse through the request log and the ingester, so every test that expects a
semantic hit first polls until the entry's row is there. What is never stored is shown against a
later stored answer: rows are ingested in the order they were written.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import httpx
import openai
import pytest

from gateway.providers.mock.vectors import embed
from gateway.telemetry import vectors
from tests.support.cache import _redis_cleanup, cache_gateway  # noqa: F401
from tests.support.fake_clock import FakeClock
from tests.support.fake_upstream import FakeUpstream, chat_chunk, sse_event
from tests.support.polling import wait_for
from tests.support.telemetry import chdb_dsn, free_port, isolate_telemetry_data, select_rows, tdb, telemetry_yaml  # noqa: F401

DIMS = 256
TABLE = f"llm_semantic_cache_d{DIMS}"
MAX_DISTANCE = 0.06

# Two wordings of one question (the mock's bag of words puts them 0.039 apart), another
# question worded alike (0.083 apart: beyond MAX_DISTANCE), and an unrelated one (1.0).
QUESTION = "please tell me which city is the capital of france in europe"
PARAPHRASE = "please tell me which city is the capital of france in europe today"
OTHER = "please tell me which city is the capital of spain in europe"
UNRELATED = "write a short poem about autumn leaves falling on a quiet river"


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


SEM = "{enabled: true}"


def config(tdb_name: str, log_dir, *, fake_url: str = "http://127.0.0.1:9/v1", extra: str = "",
           lookup: float = 10, telemetry: str = "") -> str:
    """``lookup``: the look-up's bound; generous by default, for a loaded machine (the first
    query of a process also opens its connection)."""
    dead = free_port()  # nothing listens there: the embeddings backend that is down
    return f"""
backends:
  mock: {{type: mock, mock: {{embedding_dims: {DIMS}, tokens: 12}}}}
  slow: {{type: mock, mock: {{embedding_dims: {DIMS}, latency_ms: 5000}}}}
  fake: {{type: openai, base_url: "{fake_url}", api_key: sk-backend}}
  down: {{type: openai, base_url: "http://127.0.0.1:{dead}/v1", api_key: sk-backend}}
models:
  gpt-sem:
    targets: [{{backend: mock, model: mock-chat}}]
    cache: {{enabled: true, mode: always, semantic: {SEM}}}
  gpt-twin:
    targets: [{{backend: mock, model: mock-chat}}]
    cache: {{enabled: true, mode: always, semantic: {SEM}}}
  gpt-fake:
    targets: [{{backend: fake, model: up-model}}]
    cache: {{enabled: true, mode: always, semantic: {SEM}}}
  gpt-blind:
    targets: [{{backend: mock, model: mock-chat}}]
    cache: {{enabled: true, mode: always, semantic: {{enabled: true, embedding_model: emb-down}}}}
  gpt-held:
    targets: [{{backend: mock, model: mock-chat}}]
    cache: {{enabled: true, mode: always, semantic: {{enabled: true, embedding_model: emb-fake}}}}
  gpt-slow-embed:
    targets: [{{backend: mock, model: mock-chat}}]
    cache: {{enabled: true, mode: always, semantic: {{enabled: true, embedding_model: emb-slow}}}}
  gpt-brief:
    targets: [{{backend: mock, model: mock-chat}}]
    cache: {{enabled: true, mode: always, semantic: {{enabled: true, ttl_s: 100}}}}
  gpt-young:
    targets: [{{backend: mock, model: mock-chat}}]
    cache: {{enabled: true, mode: always, semantic: {{enabled: true, max_age_s: 60}}}}
  emb:
    targets: [{{backend: mock, model: mock-embed}}]
  emb-down:
    targets: [{{backend: down, model: text-embedding}}]
  emb-fake:
    targets: [{{backend: fake, model: text-embedding}}]
  emb-slow:
    targets: [{{backend: slow, model: text-embedding}}]
routing: {{retry: {{attempts: 1}}}}
cache:
  semantic: {{embedding_model: emb, max_distance: {MAX_DISTANCE}, embed_timeout_s: 0.5, lookup_timeout_s: {lookup}}}
{extra}
{telemetry_yaml(chdb_dsn(), tdb_name, log_dir, extra=telemetry)}
"""


def select(database: str, sql: str) -> list[dict]:
    try:
        return select_rows(database, sql)
    except Exception as exc:  # the table is created with its first row
        if vectors.is_unknown_table(exc):
            return []
        raise


def entries(database: str) -> list[dict]:
    return select(database, f"SELECT toString(entry_id) AS entry_id, toString(request_id) AS request_id, model, "
                  f"tenant, question, key_hash, embedding_model, length(embedding) AS dims FROM {TABLE} ORDER BY ts")


def until_entries(database: str, n: int) -> list[dict]:
    return wait_for(lambda: (lambda rows: rows if len(rows) >= n else None)(entries(database)),
                    what=f"{n} semantic cache entries in ClickHouse")


def request_rows(database: str, n: int) -> dict[str, dict]:
    sql = ("SELECT toString(request_id) AS id, model_requested, cache_status, cache_distance, cache_entry_id, "
           "parent_request_id, status_code FROM llm_requests")
    rows = wait_for(lambda: (lambda r: r if len(r) >= n else None)(select(database, sql)),
                    what=f"{n} request rows")
    return {r["id"]: r for r in rows}


@pytest.fixture
def gw_factory(cache_gateway, tdb, tmp_path):  # noqa: F811
    def make(**kw):
        return cache_gateway(config(tdb, tmp_path / "spool", **kw))
    return make


def ask(gw, text: str, model: str = "gpt-sem", headers: dict | None = None, **params):
    return gw.sdk().chat.completions.with_raw_response.create(
        model=model, messages=_user(text), extra_headers=headers or {}, **params)


# --- hits ----------------------------------------------------------------------------
def test_near_question_is_served_the_stored_answer_and_rows_say_so(gw_factory, tdb):
    gw = gw_factory()
    first = ask(gw, QUESTION)
    assert first.headers["x-gateway-cache"] == "miss"
    stored = until_entries(tdb, 1)[0]
    assert stored["model"] == "gpt-sem" and stored["embedding_model"] == "emb" and stored["dims"] == DIMS
    assert stored["question"] == ""  # rows keep request bodies only when telemetry.bodies.request says so

    near = ask(gw, PARAPHRASE)
    assert near.headers["x-gateway-cache"] == "semantic_hit"
    assert int(near.headers["age"]) >= 0
    # The mock's answer depends on the request: the same words prove it came from the cache.
    assert near.http_response.content == first.http_response.content
    assert ask(gw, OTHER).headers["x-gateway-cache"] == "miss"  # near in words, beyond max_distance
    assert ask(gw, UNRELATED).headers["x-gateway-cache"] == "miss"

    hit = next(r for r in gw.records if r.cache_status == "semantic_hit")
    assert 0 < hit.cache_distance <= MAX_DISTANCE and hit.cache_entry_id == stored["entry_id"]
    assert hit.usage.total_tokens is None and hit.t_upstream_start is None  # no model answered it
    assert hit.cache_saved_ms is not None and hit.cache_saved_ms > 0  # the original answer's latency
    rows = request_rows(tdb, 8)  # four requests, each with its embedding call
    first_id, near_id = first.headers["x-request-id"], near.headers["x-request-id"]
    assert stored["request_id"] == first_id
    assert rows[near_id]["cache_status"] == "semantic_hit"
    assert rows[near_id]["cache_entry_id"] == stored["entry_id"]
    assert rows[near_id]["cache_distance"] == pytest.approx(hit.cache_distance, abs=1e-4)
    assert rows[first_id]["cache_status"] == "miss" and rows[first_id]["cache_distance"] is None
    embeds = [r for r in rows.values() if r["model_requested"] == "emb"]
    assert {r["parent_request_id"] for r in embeds} == {r["id"] for r in rows.values() if r["model_requested"] != "emb"}
    assert all(r["status_code"] == 200 for r in embeds)
    stats = httpx.get(f"{gw.url}/admin/cache").json()["stats"]
    assert stats["semantic_errors"] == 0  # the first look-up met no table yet: empty, not an error
    assert stats["semantic_hits"] == 1 and stats["semantic_misses"] == 3 and stats["semantic_stores"] == 3


def test_rows_keep_the_question_where_rows_keep_request_bodies(gw_factory, tdb):
    gw = gw_factory(telemetry="  bodies: {request: true, max_bytes: 24}")
    ask(gw, "é" * 8 + " " + QUESTION)
    assert until_entries(tdb, 1)[0]["question"] == "é" * 8 + " " + QUESTION[:7]  # cut to 24 bytes


def test_an_exact_repeat_is_an_exact_hit_first(gw_factory, tdb):
    gw = gw_factory()
    ask(gw, QUESTION)
    until_entries(tdb, 1)
    again = ask(gw, QUESTION)
    assert again.headers["x-gateway-cache"] == "hit"
    assert not [r for r in gw.records if r.model_requested == "emb" and r.parent_request_id ==
                again.headers["x-request-id"]]  # no embedding call for an exact hit


def test_stream_replay_of_a_semantic_hit_is_the_original_stream(gw_factory, tdb):
    gw = gw_factory()
    body = {"model": "gpt-sem", "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json={**body, "messages": _user(QUESTION)},
                      timeout=30) as r:
        original = b"".join(r.iter_bytes())
        assert r.headers["x-gateway-cache"] == "miss"
    until_entries(tdb, 1)
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", json={**body, "messages": _user(PARAPHRASE)},
                      timeout=30) as r:
        replay = b"".join(r.iter_bytes())
        assert r.headers["x-gateway-cache"] == "semantic_hit"
    assert replay == original and original.endswith(b"data: [DONE]\n\n")
    # A client of the SDK reads the same words; a JSON request is answered from the stored stream too.
    words = "".join(c.choices[0].delta.content or "" for c in gw.sdk().chat.completions.create(
        model="gpt-sem", messages=_user(PARAPHRASE), stream=True) if c.choices)
    as_json = ask(gw, PARAPHRASE)
    assert as_json.headers["x-gateway-cache"] == "semantic_hit"
    assert as_json.parse().choices[0].message.content == words != ""


# --- what must match -----------------------------------------------------------------
def test_other_parameters_model_and_tools_must_match_exactly(gw_factory, tdb):
    gw = gw_factory()
    ask(gw, QUESTION, temperature=0)
    until_entries(tdb, 1)
    assert ask(gw, PARAPHRASE, temperature=0).headers["x-gateway-cache"] == "semantic_hit"
    assert ask(gw, PARAPHRASE, temperature=0.7).headers["x-gateway-cache"] == "miss"
    assert ask(gw, PARAPHRASE, model="gpt-twin", temperature=0).headers["x-gateway-cache"] == "miss"
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
    assert ask(gw, PARAPHRASE, temperature=0, tools=[tool]).headers["x-gateway-cache"] == "miss"
    assert ask(gw, PARAPHRASE, temperature=0, max_tokens=50).headers["x-gateway-cache"] == "miss"
    # A system message is not part of the question (roles: [user]): it must match exactly.
    r = gw.sdk().chat.completions.with_raw_response.create(
        model="gpt-sem", temperature=0, messages=[{"role": "system", "content": "Be brief."}, *_user(PARAPHRASE)])
    assert r.headers["x-gateway-cache"] == "miss"


def test_tenants_never_share_semantic_entries(gw_factory, tdb):
    keys = {name: f"sk-gw-{name}-{uuid.uuid4().hex}" for name in ("acme", "globex")}
    entries_yaml = "\n".join(f"  - {{tenant: {n}, sha256: {hashlib.sha256(k.encode()).hexdigest()}}}"
                             for n, k in keys.items())
    gw = gw_factory(extra=f"keys:\n{entries_yaml}")

    def status(tenant: str, text: str) -> str:
        client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=keys[tenant], max_retries=0)
        return client.chat.completions.with_raw_response.create(
            model="gpt-sem", messages=_user(text)).headers["x-gateway-cache"]

    assert status("acme", QUESTION) == "miss"
    assert until_entries(tdb, 1)[0]["tenant"] == "acme"
    assert status("globex", PARAPHRASE) == "miss"
    assert status("acme", PARAPHRASE) == "semantic_hit"
    # Each embedding call is the caller's: its key and tenant.
    for child in (c for c in gw.records if c.model_requested == "emb"):
        parent = next(c for c in gw.records if c.request_id == child.parent_request_id)
        assert (child.tenant, child.api_key_id) == (parent.tenant, parent.api_key_id) != ("", "")
        assert child.metadata["semantic_cache"] == parent.request_id


# --- safety --------------------------------------------------------------------------
def test_no_cache_skips_the_lookup_but_stores_and_no_store_does_neither(gw_factory, tdb):
    gw = gw_factory()
    ask(gw, QUESTION)
    until_entries(tdb, 1)
    r = ask(gw, PARAPHRASE, headers={"Cache-Control": "no-cache"})
    assert r.headers["x-gateway-cache"] == "bypass"  # not looked up
    assert until_entries(tdb, 2)[1]["request_id"] == r.headers["x-request-id"]  # the fresh answer is kept
    assert ask(gw, UNRELATED, headers={"Cache-Control": "no-store"}).headers["x-gateway-cache"] == "bypass"
    last = ask(gw, "an entirely different request about green tea brewing times and temperatures")
    assert until_entries(tdb, 3)[2]["request_id"] == last.headers["x-request-id"]  # no-store left no entry
    no_cache = next(c for c in gw.records if c.request_id == r.headers["x-request-id"])
    assert no_cache.cache_status == "bypass" and no_cache.cache_distance is None
    # Its question was embedded after the answer, to store it: that call is its child too.
    assert [c.parent_request_id for c in gw.records if c.model_requested == "emb"].count(no_cache.request_id) == 1


def test_max_age_bounds_what_is_served(gw_factory, tdb):
    gw = gw_factory()
    clock = FakeClock(time.time())
    gw.cache.use_clock(clock)
    ask(gw, QUESTION, model="gpt-young")
    until_entries(tdb, 1)
    clock.advance(30)
    assert ask(gw, PARAPHRASE, model="gpt-young").headers["x-gateway-cache"] == "semantic_hit"
    # The request's own max-age is a bound too.
    assert ask(gw, PARAPHRASE, model="gpt-young", headers={"Cache-Control": "max-age=10"}
               ).headers["x-gateway-cache"] == "miss"
    clock.advance(31)  # older than the model's max_age_s: 60
    assert ask(gw, QUESTION + " now", model="gpt-young").headers["x-gateway-cache"] == "miss"


def test_expired_entries_are_never_served(gw_factory, tdb):
    gw = gw_factory()
    clock = FakeClock(time.time())
    gw.cache.use_clock(clock)
    ask(gw, QUESTION, model="gpt-brief")
    until_entries(tdb, 1)
    clock.advance(50)
    assert ask(gw, PARAPHRASE, model="gpt-brief").headers["x-gateway-cache"] == "semantic_hit"
    clock.advance(51)  # past the entry's ttl_s: 100
    assert ask(gw, QUESTION + " now", model="gpt-brief").headers["x-gateway-cache"] == "miss"


def test_telemetry_switched_off_by_the_environment_leaves_exact_caching_only(gw_factory, tdb, monkeypatch):
    monkeypatch.setenv("LLM_GATEWAY_TELEMETRY", "off")
    gw = gw_factory()
    assert ask(gw, QUESTION).headers["x-gateway-cache"] == "miss"
    assert ask(gw, PARAPHRASE).headers["x-gateway-cache"] == "miss"
    assert ask(gw, QUESTION).headers["x-gateway-cache"] == "hit"
    assert not [c for c in gw.records if c.model_requested == "emb"]  # nothing embedded
    assert gw.cache.stats.semantic_misses == gw.cache.stats.semantic_errors == 0


def test_errors_and_length_cut_answers_are_never_stored(gw_factory, tdb):
    with FakeUpstream() as fake:
        gw = gw_factory(fake_url=fake.url)
        fake.json({"error": {"message": "overloaded", "type": "server_error"}}, status=500, times=1)
        with pytest.raises(openai.InternalServerError):
            ask(gw, QUESTION, model="gpt-fake")
        # A stream the upstream cuts mid-way is no answer either.
        fake.sse([sse_event(chat_chunk("The capital")), sse_event(chat_chunk(" is"))], abort_after=2, times=1)
        with pytest.raises((openai.APIError, httpx.HTTPError)):
            list(gw.sdk().chat.completions.create(model="gpt-fake", messages=_user(QUESTION), stream=True))
        # Cut by max_tokens (finish_reason "length"): the exact cache may keep it, the semantic one never.
        cut = ask(gw, QUESTION, max_tokens=2)
        assert cut.parse().choices[0].finish_reason == "length"
        ok = ask(gw, UNRELATED)
        rows = until_entries(tdb, 1)
        assert [e["request_id"] for e in rows] == [ok.headers["x-request-id"]]
        assert ask(gw, PARAPHRASE, max_tokens=2).headers["x-gateway-cache"] == "miss"
        assert gw.cache.stats.semantic_hits == 0


def test_embeddings_backend_down_serves_uncached(gw_factory, tdb):
    gw = gw_factory()
    for text in (QUESTION, PARAPHRASE):
        r = ask(gw, text, model="gpt-blind")
        assert r.status_code == 200 and r.headers["x-gateway-cache"] == "miss"
        assert r.parse().choices[0].message.content
    failed = [c for c in gw.records if c.model_requested == "emb-down"]
    assert len(failed) == 2 and all(c.status_code >= 500 for c in failed)  # one per request: not again to store
    served = {c.request_id for c in gw.records if c.model_requested == "gpt-blind"}
    assert {c.parent_request_id for c in failed} == served
    assert gw.cache.stats.semantic_errors == 2 and gw.cache.stats.semantic_stores == 0


def test_check_config_names_the_unknown_embeddings_model(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text("""
backends:
  m: {type: mock}
models:
  chat:
    targets: [{backend: m}]
    cache: {enabled: true, semantic: {enabled: true, embedding_model: nope}}
""")
    out = subprocess.run([sys.executable, "-m", "gateway", "check-config", str(path)], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2
    assert 'models.chat.cache.semantic.embedding_model: unknown model "nope"' in out.stderr


def test_identical_requests_during_the_lookup_share_its_semantic_hit(gw_factory, tdb):
    with FakeUpstream() as fake:
        fake.respond(lambda r: {"object": "list", "model": "text-embedding", "data": [
            {"object": "embedding", "index": i, "embedding": embed(text, DIMS)}
            for i, text in enumerate(r.json()["input"])]})  # the gateway sends a list of inputs
        gw = gw_factory(fake_url=fake.url)
        ask(gw, QUESTION, model="gpt-held")
        until_entries(tdb, 1)
        fake.hold()  # the leader's embedding call waits: an identical request joins it meanwhile
        results: dict[str, Any] = {}

        def go(name: str) -> None:
            results[name] = ask(gw, PARAPHRASE, model="gpt-held")

        leader = threading.Thread(target=go, args=("leader",))
        leader.start()
        wait_for(lambda: len(fake.received) == 2, what="the leader's embedding call")
        follower = threading.Thread(target=go, args=("follower",))
        follower.start()
        wait_for(lambda: any(f._waiters for f in list(gw.cache.flights.values())), what="a follower")
        fake.release()
        leader.join(30)
        follower.join(30)
        first, second = results["leader"], results["follower"]
        assert first.headers["x-gateway-cache"] == "semantic_hit"
        assert second.headers["x-gateway-cache"] == "coalesced"
        assert first.http_response.content == second.http_response.content
        assert len(fake.received) == 2  # the follower embedded nothing


def test_a_slow_embedding_or_lookup_is_a_miss_never_an_error(gw_factory, tdb):
    gw = gw_factory(lookup=0.000001)
    ask(gw, QUESTION)
    until_entries(tdb, 1)
    t0 = time.perf_counter()
    r = ask(gw, PARAPHRASE)  # the look-up cannot answer within its bound
    assert r.status_code == 200 and r.headers["x-gateway-cache"] == "miss"
    r = ask(gw, QUESTION, model="gpt-slow-embed")  # the embeddings model takes 5 s; the bound is 0.5 s
    assert r.status_code == 200 and r.headers["x-gateway-cache"] == "miss"
    assert time.perf_counter() - t0 < 4.5
    # Three: the first request's look-up timed out too (its answer was stored all the same).
    assert gw.cache.stats.semantic_errors == 3 and gw.cache.stats.semantic_hits == 0
