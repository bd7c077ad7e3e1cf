"""Retrieval collections over real HTTP on loopback, with the embedded store (chDB) and the mock's
bag-of-words embeddings: documents embedded through the gateway (logged and costed rows), the
nearest chunks found by vector distance, metadata filters, tenants kept apart, keys limited by
their ``collections`` globs, bad bodies refused in OpenAI's shape, and a chain whose retrieve
step feeds the next step's prompt and records the chunks it used on the chain's row."""

from __future__ import annotations

import httpx
import openai
import pytest

from gateway.compiled import compile_config
from gateway.config import ConfigError, load_config
from gateway.retrieval.chunking import chunk_id
from tests.support.collections import ADMIN, KEY_A, KEY_B, KEY_PUBLIC, admin, flush, sdk, search, write_config
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import serve
from tests.support.polling import wait_for
from tests.support.telemetry import isolate_telemetry_data, select_rows, tdb  # noqa: F401

HANDBOOK = [
    {"doc_id": "kettle.md", "chunk_index": 0, "text": "The kettle boils water for tea in two minutes.",
     "metadata": {"lang": "en", "section": "Kitchen"}},
    {"doc_id": "garden.txt", "chunk_index": 0, "text": "Tomatoes grow best in sunny gardens with compost.",
     "metadata": {"lang": "en"}},
    {"doc_id": "berlin.txt", "chunk_index": 0, "text": "Der Fernsehturm steht in Berlin am Alexanderplatz.",
     "metadata": {"lang": "de"}},
]


@pytest.fixture
def upstream():
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def gw(tmp_path, upstream, tdb):
    with serve(path=write_config(tmp_path, upstream.url, tdb)) as srv:
        srv.database = tdb
        yield srv




def create(gw, name: str, tenant: str = "", model: str = "emb") -> httpx.Response:
    return admin(gw, "POST", "/admin/collections", json={"name": name, "embedding_model": model, "tenant": tenant,
                                                         "chunk_size": 400, "chunk_overlap": 40})


def fill(gw) -> None:
    """handbook (team-a's), secrets (team-b's) and public-faq (shared), in the store."""
    assert create(gw, "handbook", "team-a").status_code == 201
    assert create(gw, "secrets", "team-b").status_code == 201
    assert create(gw, "public-faq").status_code == 201
    assert admin(gw, "POST", "/admin/collections/handbook/chunks", json={"chunks": HANDBOOK}).json()["added"] == 3
    admin(gw, "POST", "/admin/collections/secrets/chunks", json={"chunks": [
        {"doc_id": "plan.txt", "chunk_index": 0, "text": "The secret launch plan of team b."}]})
    admin(gw, "POST", "/admin/collections/public-faq/chunks", json={"chunks": [
        {"doc_id": "faq", "chunk_index": 0, "text": "Opening hours are nine to five on weekdays."}]})
    flush(gw)


def test_documents_are_embedded_stored_and_found_nearest_first(gw):
    fill(gw)
    listed = {c["name"]: c for c in admin(gw, "GET", "/admin/collections").json()["data"]}
    assert listed["handbook"]["dims"] == 256 and listed["handbook"]["chunks"] == 3
    assert listed["handbook"]["documents"] == 3 and listed["handbook"]["tenant"] == "team-a"
    assert listed["public-faq"]["tenant"] == "" and listed["secrets"]["chunks"] == 1

    # Through the official SDK: the query sharing the kettle document's words finds it first.
    raw = sdk(gw, KEY_A).post("/collections/handbook/search", cast_to=httpx.Response,
                              body={"query": "how fast does the kettle boil water", "k": 3})
    answer = raw.json()
    assert answer["object"] == "list" and answer["collection"] == "handbook" and answer["model"] == "emb"
    first = answer["data"][0]
    assert first["doc_id"] == "kettle.md" and first["id"] == chunk_id("handbook", "kettle.md", 0)
    assert first["metadata"] == {"lang": "en", "section": "Kitchen"} and first["chunk_index"] == 0
    distances = [h["distance"] for h in answer["data"]]
    assert distances == sorted(distances) and distances[0] < 0.8 < distances[-1]
    search_id = raw.headers["x-request-id"]

    # A metadata filter: equality on metadata[key].
    found = search(gw, KEY_A, "handbook", query="kettle water", k=5, filter={"lang": "de"}).json()["data"]
    assert [h["doc_id"] for h in found] == ["berlin.txt"]
    assert search(gw, KEY_A, "handbook", query="kettle", filter={"lang": "fr"}).json()["data"] == []

    # The query's embedding is a row of its own: the key's tenant, tagged, linked, costed.
    flush(gw)
    emb = select_rows(gw.database, "SELECT tenant, api_key_id, metadata, parent_request_id, prompt_tokens, cost_usd, "
                            "status_code FROM llm_requests WHERE endpoint = 'embeddings' ORDER BY ts_start")
    searched = [r for r in emb if r["metadata"].get("retrieval") == "search"]
    assert searched[0]["tenant"] == "team-a" and searched[0]["api_key_id"] == "team-a-main"
    assert searched[0]["metadata"]["collection"] == "handbook" and searched[0]["parent_request_id"] == search_id
    assert searched[0]["prompt_tokens"] > 0
    assert searched[0]["cost_usd"] == pytest.approx(searched[0]["prompt_tokens"])  # $1 a token
    added = [r for r in emb if r["metadata"].get("retrieval") == "add"]
    # as the collection's tenant; a shared one's as the admin
    assert {r["tenant"] for r in added} == {"team-a", "team-b", "admin"} and all(r["status_code"] == 200 for r in emb)
    assert all(r["cost_usd"] > 0 for r in added)
    # docs/retrieval.md's query of what each collection cost
    costs = select_rows(gw.database, "SELECT metadata['collection'] AS collection, metadata['retrieval'] AS what, "
                              "count() AS calls, sum(prompt_tokens) AS tokens, sum(cost_usd) AS usd FROM llm_requests "
                              "WHERE endpoint = 'embeddings' AND metadata['retrieval'] != '' "
                              "GROUP BY collection, what ORDER BY collection, what")
    handbook = {r["what"]: r for r in costs if r["collection"] == "handbook"}
    assert set(handbook) == {"create", "add", "search"} and handbook["add"]["usd"] == handbook["add"]["tokens"] > 0


def test_tenants_keys_and_the_admin_reach_only_what_they_may(gw):
    fill(gw)
    unknown = search(gw, KEY_A, "no-such", query="x")
    others = search(gw, KEY_A, "secrets", query="launch plan")
    # Another tenant's collection is answered exactly like one that does not exist.
    assert unknown.status_code == others.status_code == 404
    assert others.json()["error"]["code"] == "collection_not_found"
    assert others.json()["error"]["message"].replace("secrets", "X") == \
        unknown.json()["error"]["message"].replace("no-such", "X")
    assert search(gw, KEY_B, "secrets", query="launch plan").json()["data"][0]["doc_id"] == "plan.txt"
    # Shared collections: every tenant.
    for key in (KEY_A, KEY_B, KEY_PUBLIC):  # (KEY_PUBLIC's models are gpt-*: the collection stands for its model)
        assert search(gw, key, "public-faq", query="opening hours").status_code == 200
    # A key limited to public-* collections: its own tenant's handbook is forbidden (it exists for it).
    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk(gw, KEY_PUBLIC).post("/collections/handbook/search", cast_to=httpx.Response, body={"query": "kettle"})
    assert info.value.body["code"] == "collection_not_allowed"
    # No key, a wrong key: 401. The admin key: every collection.
    assert search(gw, None, "handbook", query="kettle").status_code == 401
    assert search(gw, "sk-gw-wrong", "handbook", query="kettle").status_code == 401
    assert search(gw, ADMIN, "secrets", query="launch plan").json()["data"][0]["doc_id"] == "plan.txt"
    # Admin routes take the admin key only.
    assert httpx.get(f"{gw.url}/admin/collections", headers={"Authorization": f"Bearer {KEY_A}"}).status_code == 401


def test_bad_requests_get_openai_shaped_errors(gw):
    assert create(gw, "handbook", "team-a").status_code == 201
    assert create(gw, "handbook").json()["error"]["code"] == "collection_exists"
    assert create(gw, "bad name!").status_code == 400
    assert create(gw, "nomodel", model="no-such-model").status_code == 404
    assert admin(gw, "GET", "/admin/collections/nomodel").status_code == 404
    for body, param in (({"query": ""}, "query"), ({"query": "x", "k": 0}, "k"), ({"query": "x", "k": 101}, "k"),
                        ({"query": "x", "k": True}, "k"), ({"query": "x", "filter": {"lang": 1}}, "filter"),
                        ({"query": "x", "top_k": 3}, "top_k")):
        resp = search(gw, KEY_A, "handbook", **body)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == param, (body, resp.text)
    resp = httpx.post(f"{gw.url}/v1/collections/handbook/search", content=b"[1]",
                      headers={"Authorization": f"Bearer {KEY_A}"})
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
    assert "must be a JSON object" in resp.json()["error"]["message"]
    for junk in (b'{"query": "\\ud800"}', b"{not json"):  # a lone surrogate orjson refuses; not JSON at all
        resp = httpx.post(f"{gw.url}/v1/collections/handbook/search", content=junk,
                          headers={"Authorization": f"Bearer {KEY_A}"})
        assert resp.status_code == 400 and "could not parse the JSON body" in resp.json()["error"]["message"], junk
    bad = admin(gw, "POST", "/admin/collections/handbook/chunks", json={"chunks": [{"doc_id": "a", "text": "x"}]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "chunks[0].chunk_index"
    # Nothing stored yet: a search finds nothing (its vector table does not exist yet).
    assert search(gw, KEY_A, "handbook", query="kettle").json()["data"] == []


def test_a_chain_retrieves_for_its_next_step_and_its_row_records_the_chunks(gw, upstream):
    fill(gw)
    upstream.json({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up-model",
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "Two minutes."},
                                "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}})
    raw = sdk(gw, KEY_A).chat.completions.with_raw_response.create(
        model="rag", messages=[{"role": "user", "content": "How fast does the kettle boil water?"}])
    assert raw.parse().choices[0].message.content == "Two minutes."
    chain_id = raw.headers["x-request-id"]
    sent = upstream.received[-1].json()["messages"]
    assert sent[0]["role"] == "system" and "[kettle.md] The kettle boils water for tea" in sent[0]["content"]
    assert sent[1] == {"role": "user", "content": "How fast does the kettle boil water?"}

    flush(gw)
    chain_row = wait_for(lambda: select_rows(gw.database, "SELECT retrieved_chunks, retrieved_distances, tenant, "
                                      "prompt_tokens, completion_tokens "
                                      f"FROM llm_requests WHERE request_id = '{chain_id}'"), what="the chain's row")[0]
    assert chain_row["retrieved_chunks"][0] == chunk_id("handbook", "kettle.md", 0)
    assert len(chain_row["retrieved_chunks"]) == len(chain_row["retrieved_distances"]) == 2
    assert chain_row["retrieved_distances"] == sorted(chain_row["retrieved_distances"])
    assert (chain_row["prompt_tokens"], chain_row["completion_tokens"]) == (9, 2)  # its model step's only
    step_rows = select_rows(gw.database, "SELECT endpoint, metadata, parent_request_id, session_id FROM llm_requests "
                                  f"WHERE parent_request_id = '{chain_id}' ORDER BY ts_start")
    assert [r["endpoint"] for r in step_rows] == ["embeddings", "chat/completions"]
    assert step_rows[0]["metadata"]["chain_step"] == "docs" and step_rows[0]["metadata"]["retrieval"] == "chain"
    assert step_rows[0]["session_id"] == step_rows[1]["session_id"] == chain_id

    # Team b's key runs the same chain: team a's handbook does not exist for it.
    with pytest.raises(openai.NotFoundError) as info:
        sdk(gw, KEY_B).chat.completions.create(model="rag", messages=[{"role": "user", "content": "kettle"}])
    assert 'step 1 "docs" (retrieve from handbook)' in info.value.body["message"]
    assert info.value.body["code"] == "collection_not_found"


def test_without_telemetry_collections_answer_503(tmp_path, upstream):
    path = write_config(tmp_path, upstream.url, "unused")
    path.write_text(path.read_text().split("\ntelemetry:")[0] + "\ntelemetry: {enabled: false}\n")
    with serve(path=path) as srv:
        assert create(srv, "handbook").status_code == 503
        resp = search(srv, KEY_A, "handbook", query="kettle")
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "store_unavailable"


@pytest.mark.parametrize("step, message", [
    ("{name: docs, retrieve: {collection: handbook, top_k: 3}}", "steps[0].retrieve.top_k: Extra inputs"),
    ("{name: docs, model: gpt-test, retrieve: {collection: handbook}}", "a retrieve step calls no model: remove `model`"),
    ("{name: docs, retrieve: {collection: handbook, k: 0}}", "steps[0].retrieve.k: Input should be greater than"),
    ("{name: docs, retrieve: {collection: handbook, query: '{{ input '}}", "retrieve.query: template syntax error"),
])
def test_retrieve_steps_are_checked_when_the_config_loads(tmp_path, upstream, step, message):
    path = write_config(tmp_path, upstream.url, "unused")
    (tmp_path / "chains" / "rag.yaml").write_text(f"steps:\n  - {step}\n  - {{name: answer, prompt: answer@1, "
                                                  "model: gpt-test}\n")
    with pytest.raises(ConfigError) as info:
        compile_config(load_config(path))
    assert message in str(info.value)


def test_the_last_step_must_call_a_model(tmp_path, upstream):
    path = write_config(tmp_path, upstream.url, "unused")
    (tmp_path / "chains" / "rag.yaml").write_text("steps:\n  - {name: docs, retrieve: {collection: handbook}}\n")
    with pytest.raises(ConfigError, match=r"steps\[0\]\.retrieve: the last step must call a model"):
        compile_config(load_config(path))
