"""``eval run`` refusing or failing loudly: a gateway with keys and no ``--api-key`` is refused
before any call (exit 2); a run in which every call fails is recorded ``failed`` and exits 2
naming the first error and the count; some failed calls are counted on stderr, the run
``finished``. (The fixture and the fake upstream are in tests/support/evals.py.)"""

from __future__ import annotations

import orjson

from tests.support.evals import eval_run, setup  # noqa: F401
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml  # noqa: F401
from tests.support.telemetry_rows import select


def items(path, *inputs):
    path.write_text("".join(orjson.dumps({"id": f"i{n}", "input": t, "expected": "4"}).decode() + "\n"
                            for n, t in enumerate(inputs)))
    return str(path)


def test_no_key_all_calls_failing_and_some_failing(setup, tdb):
    tmp_path, config, fake = setup
    keyed = config.with_name("keyed.yaml")  # the key: sk-client-1
    keyed.write_text(config.read_text() + "\nkeys:\n  - {id: k1, tenant: t, sha256: c3d084b6952a4948b387d27ea14d1dd9f56e2870b1d8aba4d6177e215244d694}\n")
    data = items(tmp_path / "ok.jsonl", "What is 2+2?")
    before = len(fake.received)
    refused = eval_run(keyed, "--dataset", data, "-c", "gpt-test", "--run-id", "nokey")
    assert refused.exit_code == 2, refused.output
    assert "requires an API key (auth.mode is keys): give eval run --api-key" in refused.stderr
    assert len(fake.received) == before
    keyed_ok = eval_run(keyed, "--dataset", data, "-c", "gpt-test", "--api-key", "sk-client-1", "--run-id", "key")
    assert keyed_ok.exit_code == 0, keyed_ok.output

    broken = eval_run(config, "--dataset", items(tmp_path / "bad.jsonl", "Explode", "Explode"), "-c", "gpt-test",
                      "--run-id", "allfail")
    assert broken.exit_code == 2, broken.output
    assert "run allfail: every call failed (2 of 2; recorded as failed); the first: HTTP 500: backend on fire" \
        in broken.stderr
    assert select(tdb, "SELECT argMax(status, version) AS s FROM llm_eval_runs WHERE run_id = 'allfail'") == [
        {"s": "failed"}]

    some = eval_run(config, "--dataset", items(tmp_path / "some.jsonl", "What is 2+2?", "Explode"), "-c", "gpt-test",
                    "--run-id", "somefail")
    assert some.exit_code == 0, some.output
    assert "eval somefail: 1 of 2 calls failed; the first: HTTP 500: backend on fire" in some.stderr
    assert select(tdb, "SELECT argMax(status, version) AS s FROM llm_eval_runs WHERE run_id = 'somefail'") == [
        {"s": "finished"}]


def test_a_gate_naming_no_scorer_and_an_unwritable_output_are_refused_before_any_call(setup):
    tmp_path, config, fake = setup
    data = items(tmp_path / "ok.jsonl", "What is 2+2?")
    before = len(fake.received)
    for args, message in (
            (["--gate", "nosuchscorer>=0.1"], "gate 'nosuchscorer>=0.1': 'nosuchscorer' is neither a scorer of "
                                              "this run (exact) nor a measure (error_rate, latency_p50_ms"),
            (["-s", "judge", "--gate", "exact>=1"], "'exact' is neither a scorer of this run (judge)"),
            (["-o", str(tmp_path / "nonexistent" / "r.json")], "cannot write there"),
            (["-o", str(tmp_path)], "cannot write there")):
        refused = eval_run(config, "--dataset", data, "-c", "gpt-test", *args)
        assert refused.exit_code == 2 and message in refused.stderr, refused.output
    assert len(fake.received) == before
    ok = eval_run(config, "--dataset", data, "-c", "gpt-test", "--gate", "exact>=1", "--gate", "latency_p95_ms>0",
                  "-o", str(tmp_path / "r.json"))
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "r.json").read_bytes().startswith(b"{")
