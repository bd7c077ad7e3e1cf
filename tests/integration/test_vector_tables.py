"""The vector tables on real chDB: made by the first insert, searched by cosine distance."""

from __future__ import annotations

import uuid

import orjson
import pytest

from gateway.config.telemetry import ClickHouseSettings
from gateway.telemetry import vectors
from gateway.telemetry.schema import SchemaOptions

pytest.importorskip("chdb")

from gateway.telemetry.clickhouse import ClickHouseStore  # noqa: E402


def _payload(rows):
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


@pytest.fixture()
def store(tmp_path):
    s = ClickHouseStore(ClickHouseSettings(), f"chdb://{tmp_path / 'ch'}")
    yield s
    s.close()


def _chunk(doc, i, vec, *, text=None, meta=None, version=1, deleted=False):
    return ["docs", doc, i, f"{doc}-{i}", text or f"{doc} chunk {i}", meta or {}, "embed", vec,
            "2026-12-04 00:00:00.000", version, deleted]


def test_names_are_per_family_and_length():
    assert vectors.table_name(vectors.CHUNKS, 384) == "llm_chunks_d384"
    assert vectors.parse_table("llm_semantic_cache_d1536") == (vectors.SEMANTIC, 1536)
    for name in ("llm_chunks", "llm_chunks_d0", "llm_chunks_d99999", "llm_requests", "llm_chunks_d3; DROP"):
        assert vectors.parse_table(name) is None
    with pytest.raises(ValueError):
        vectors.table_name("llm_requests", 3)
    with pytest.raises(ValueError):
        vectors.create_statements("llm_requests", SchemaOptions(database="default"))
    with pytest.raises(ValueError):
        vectors.format_vector([0.1, float("nan")])


def test_first_insert_makes_the_table_and_search_ranks_by_distance(store):
    client = store.ensure()
    sql = vectors.search_chunks_sql("default", 3, [])
    params = vectors.search_params([1, 0, 0], collection="docs", k=2, candidates=20)
    with pytest.raises(Exception) as missing:
        client.query(sql, parameters=params, settings=vectors.SEARCH_SETTINGS)
    assert vectors.is_unknown_table(missing.value)

    table = vectors.table_name(vectors.CHUNKS, 3)
    store.insert(table, vectors.CHUNK_COLUMN_NAMES, _payload([
        _chunk("a", 0, [1, 0, 0], meta={"lang": "en"}), _chunk("a", 1, [0, 1, 0], meta={"lang": "en"}),
        _chunk("b", 0, [0.9, 0.1, 0], meta={"lang": "de"})]), "t1")
    create = client.query(f"SHOW CREATE TABLE `default`.`{table}`").result_rows[0][0]
    assert "vector_similarity('hnsw', 'cosineDistance', 3)" in create

    rows = client.query(sql, parameters=params, settings=vectors.SEARCH_SETTINGS).result_rows
    assert [r[0] for r in rows] == ["a-0", "b-0"]
    assert rows[0][5] == pytest.approx(0.0, abs=1e-6) and rows[1][5] > rows[0][5]

    filtered = vectors.search_chunks_sql("default", 3, ["lang"])
    rows = client.query(filtered, parameters={**params, "fk0": "lang", "f0": "en"}, settings=vectors.SEARCH_SETTINGS).result_rows
    assert [r[0] for r in rows] == ["a-0", "a-1"]

    # a newer version replaces a chunk; a deleted one is no longer found
    store.insert(table, vectors.CHUNK_COLUMN_NAMES, _payload([
        _chunk("a", 0, [0, 0, 1], text="moved", version=2), _chunk("b", 0, [0.9, 0.1, 0], version=2, deleted=True)]),
        "t2")
    rows = client.query(sql, parameters=params, settings=vectors.SEARCH_SETTINGS).result_rows
    assert [r[0] for r in rows] == ["a-1", "a-0"] and rows[1][3] == "moved"


def test_semantic_lookup_matches_tenant_key_and_age(store):
    client = store.ensure()
    table = vectors.table_name(vectors.SEMANTIC, 2)

    def entry(tenant, key, vec, ts="2026-12-04 10:00:00.000", expires="2026-12-05 10:00:00.000"):
        return [tenant, "v1", "gpt", key, str(uuid.uuid4()), str(uuid.uuid4()), ts, expires, "embed", vec, "q", "ZQ=="]

    near = entry("acme", "k1", [1, 0.05])
    store.insert(table, vectors.SEMANTIC_COLUMN_NAMES, _payload([
        near, entry("acme", "k2", [1, 0]), entry("other", "k1", [1, 0]),
        entry("acme", "k1", [1, 0], ts="2026-12-01 00:00:00.000"),
        entry("acme", "k1", [1, 0], expires="2026-12-04 11:00:00.000")]), "s1")
    sql = vectors.semantic_lookup_sql("default", 2)
    params = vectors.search_params([1, 0], tenant="acme", namespace="v1", key_hash="k1",
                                   since="2026-12-02 00:00:00.000", now="2026-12-04 12:00:00.000")
    rows = client.query(sql, parameters=params, settings=vectors.SEARCH_SETTINGS).result_rows
    assert len(rows) == 1 and rows[0][0] == near[4] and 0 < rows[0][1] < 0.01


def test_a_vector_table_the_store_refuses_drops_its_rows_not_the_log(store, monkeypatch, caplog):
    """A server without vector indexes refuses the table: its rows are refused (so the batch's
    other tables still go in) and the refusal is not retried on every batch."""
    from gateway.telemetry.clickhouse import VectorTableRefused
    from gateway.telemetry.facts_insert import insert_rows

    calls = []

    def refused_ddl(table, opts):
        calls.append(table)
        return [f"CREATE TABLE `default`.`{table}` (x Array(Float32), INDEX i x TYPE "
                "vector_similarity('hnsw', 'no_such_distance', 3)) ENGINE = MergeTree ORDER BY tuple()"]

    monkeypatch.setattr(vectors, "create_statements", refused_ddl)
    table = vectors.table_name(vectors.CHUNKS, 3)
    rows = [_chunk("a", i, [1, 0, 0]) for i in range(4)]

    def insert(batch, token):
        store.insert(table, vectors.CHUNK_COLUMN_NAMES, _payload(batch), token)

    result = insert_rows(insert, rows, "b1")  # refused rows, not an error that stalls the log
    assert result.inserted == 0 and result.lost == 4
    assert calls == [table]  # one refusal, remembered
    with pytest.raises(VectorTableRefused):
        insert(rows, "b2")
    assert "refused to create llm_chunks_d3" in caplog.text
    store.insert("llm_collections", ("name", "dims"), b'["docs", 3]\n', "c1")  # other tables still go in
    assert store.ensure().query("SELECT count() FROM llm_collections").result_rows == [(1,)]
