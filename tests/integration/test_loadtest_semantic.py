"""The semantic cache's bench tools: the shipped paraphrase set, the threshold sweep through a real
``/v1/embeddings`` endpoint (the mock backend's, on loopback), and the look-up bench on a tiny
table (real chDB, in its child processes; the HTTP interface in another). No timing is asserted:
latency is the bench's to measure, these only show that it runs and counts right."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import orjson

from loadtest.semantic_pairs import THRESHOLDS, Pair, analyse, load_pairs, measure_mock, rates
from tests.support.telemetry import REPO


def test_the_paraphrase_set_has_enough_pairs_of_each_kind_and_no_repeats():
    pairs = load_pairs()
    kinds = Counter(p.kind for p in pairs)
    assert kinds["same"] >= 150 and kinds["different"] >= 150 and set(kinds) == {"same", "different"}
    assert len({(p.a, p.b) for p in pairs}) == len(pairs) and all(p.a != p.b for p in pairs)
    assert len({p.id for p in pairs}) == len(pairs)
    assert {p.topic for p in pairs} == {"support", "faq", "coding", "general"}


def test_rates_and_the_recommendation_follow_the_distances():
    pairs = [Pair(1, "same", "t", "a", "b"), Pair(2, "same", "t", "c", "d"),
             Pair(3, "different", "t", "e", "f"), Pair(4, "different", "t", "g", "h")]
    distances = [0.04, 0.3, 0.12, 0.5]
    assert rates(pairs, distances, 0.05) == {"threshold": 0.05, "hit_rate": 0.5, "false_hit_rate": 0.0}
    assert rates(pairs, distances, 0.35) == {"threshold": 0.35, "hit_rate": 1.0, "false_hit_rate": 0.5}
    out = analyse(pairs, distances, max_false_hit=0.0)
    assert out["recommended"] == 0.11  # the largest 0.01 step below the closest different pair
    assert out["at_recommended"]["hit_rate"] == 0.5
    assert [r["threshold"] for r in out["sweep"]] == list(THRESHOLDS)
    assert out["closest_different"][0] == {"a": "e", "b": "f", "distance": 0.12}


def test_the_mock_backends_embeddings_are_measured_over_http():
    out = measure_mock(dims=64)
    assert out["dims"] == 64 and out["pairs"] == {"same": len([p for p in load_pairs() if p.kind == "same"]),
                                                  "different": len([p for p in load_pairs() if p.kind == "different"])}
    # a bag of words: worded-alike questions are nearer than reworded ones
    assert out["distance"]["different"]["p50"] < out["distance"]["same"]["p50"]


def test_lookup_bench_runs_embedded_and_over_http_on_a_tiny_table(tmp_path):
    out = tmp_path / "lookup.json"
    proc = subprocess.run([sys.executable, "-m", "loadtest", "semantic-lookup", "--sizes", "300", "--queries", "4",
                           "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = orjson.loads(out.read_bytes())["sizes"]["300"]
    assert result["info"]["entries"] == 300 and result["info"]["parts"] == 1
    for store in ("embedded", "server"):
        cases = result[store]
        assert set(cases) == {f"{v}/{k}" for v in ("shipped", "postfilter", "brute")
                              for k in ("main key", "small key", "absent key")}
        # the shipped look-up (prefilter) is exact, and a key without entries answers nothing
        assert cases["shipped/main key"]["exact_share"] == 1.0 and cases["shipped/absent key"]["exact_share"] == 1.0
        assert cases["shipped/main key"]["queries"] == 4
    assert "| 300 | server | shipped | main key" in proc.stdout


def test_lookup_bench_times_collection_searches_too(tmp_path):
    out = tmp_path / "chunks.json"
    proc = subprocess.run([sys.executable, "-m", "loadtest", "semantic-lookup", "--family", "chunks", "--sizes", "300",
                           "--queries", "3", "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = orjson.loads(out.read_bytes())["sizes"]["300"]
    assert result["info"]["table"] == "llm_chunks_d384" and result["info"]["rows"]["absent collection"] == 0
    for store in ("embedded", "server"):
        assert result[store]["shipped/main collection"]["exact_share"] == 1.0
        assert result[store]["shipped/absent collection"]["queries"] == 3
