"""``eval run``'s in-process gateway and the vLLM fleet: the servers are production's, so the
eval only sends requests. It never loads the version of an adapter its config names on the
shared servers (a fake vLLM serving another version sees no load call) and never starts a
``launch:`` server (a fake ``python`` that leaves a mark if it is ever run)."""

from __future__ import annotations

import orjson
from click.testing import CliRunner

from gateway.cli import main
from gateway.proxy.server import free_port
from tests.support.fake_upstream import FakeVllm
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml  # noqa: F401
from tests.support.telemetry_rows import select


def test_eval_run_neither_loads_adapters_nor_launches_servers(tmp_path, tdb):
    started = tmp_path / "vllm-started"
    fake_python = tmp_path / "fake-python"
    fake_python.write_text(f"#!/bin/sh\ntouch {started}\nsleep 30\n")
    fake_python.chmod(0o755)
    items = "".join(orjson.dumps({"id": f"i{n}", "input": "hi", "expected": "vllm-a"}).decode() + "\n"
                    for n in range(3))
    (tmp_path / "data.jsonl").write_text(items)
    with FakeVllm("vllm-a") as a:
        a.base_models = {"tiny-llama"}
        a.loras = {"support-ft": "/loras/support-v1"}  # what production serves
        config = tmp_path / "gateway.yaml"
        config.write_text(f"""
backends:
  va: {{type: vllm, base_url: "{a.url}", vllm: {{scrape_interval_ms: 40, timeout_ms: 500}}}}
  local: {{type: vllm, base_url: "http://127.0.0.1:{free_port()}/v1", launch: {{model: m, python: "{fake_python}"}}}}
models:
  support-ft: {{targets: [{{backend: va, model: support-ft}}]}}
adapters:
  support-ft:
    base_model: tiny-llama
    versions: {{1: /loras/support-v1, 2: /loras/support-v2}}
    version: 2
""" + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool"))
        result = CliRunner().invoke(main, ["eval", "run", "--config", str(config), "--dataset", str(tmp_path / "data.jsonl"),
                                           "-c", "support-ft", "--run-id", "fleet", "--json"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert orjson.loads(result.stdout)["scores"]["exact"]["support-ft"]["mean"] == 1.0
        assert a.lora_calls == [] and a.loras == {"support-ft": "/loras/support-v1"}
    assert not started.exists()
    assert select(tdb, "SELECT count() AS n FROM llm_requests WHERE metadata['eval_run'] = 'fleet'") == [{"n": 3}]
