"""``eval run -c ADAPTER@VERSION``: the version is loaded on the adapter's vLLM server (a fake
with runtime LoRA) under a temporary name, the candidate's calls go to it while the adapter's own
name keeps serving the promoted version, the run records ``ADAPTER@VERSION`` (so ``adapters
promote``'s gate under that key reads it), and the temporary adapter is unloaded afterwards, also
when the run fails; a server that refuses the load refuses the run (exit 2), unloading the rest."""

from __future__ import annotations

import signal
import subprocess
import sys

import orjson
from click.testing import CliRunner

from gateway.cli import main
from tests.support.fake_upstream import FakeVllm
from tests.support.polling import wait_for
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml  # noqa: F401

DATASET = [{"id": f"q{i}", "input": q, "expected": a}
           for i, (q, a) in enumerate([("2+2?", "4"), ("Capital of France?", "Paris"), ("3*3?", "9"), ("1+0?", "1")])]
CONFIG = """\
server: {{reload_interval_s: 0.05}}
backends:
{backends}
models:
  support:
    targets: [{targets}]
adapters:
  support-ft:
    base_model: tiny-llama
    versions:
      1: /loras/s1
      2: /loras/s2
    version: 1
evaluations:
  gates: {{"support-ft@2": ["exact>=0.75"]}}
"""


def config_text(*fakes: FakeVllm) -> str:
    names = [f"v{i}" for i in range(len(fakes))]
    return CONFIG.format(backends="\n".join(f'  {n}: {{type: vllm, base_url: "{f.url}", vllm: {{enabled: false}}}}'
                                            for n, f in zip(names, fakes)),
                         targets=", ".join(f"{{backend: {n}, model: support-ft}}" for n in names))


def vllm(answers: dict[str, dict[str, str]]) -> FakeVllm:
    """A fake vLLM serving tiny-llama with version 1 of the adapter loaded; each served model
    (matched by prefix) answers from its own table, and "no idea" to the rest."""
    fake = FakeVllm("vllm")
    fake.base_models = {"tiny-llama"}
    fake.loras = {"support-ft": "/loras/s1"}

    def answer(received):
        body = received.json()
        table = next((t for prefix, t in answers.items() if body["model"].startswith(prefix)), {})
        content = table.get(body["messages"][-1]["content"], "no idea")
        return {"id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]}

    fake.respond(answer)
    return fake


def cli(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def completions(fake: FakeVllm) -> list[str]:
    return [r.json()["model"] for r in fake.received if r.path.endswith("/chat/completions")]


def test_an_adapter_version_is_evaluated_on_a_temporary_adapter_and_gates_its_promotion(tdb, tmp_path):
    v2 = {"2+2?": "4", "Capital of France?": "Paris"}  # half right
    with vllm({"support-ft--v2--": v2, "support-ft": {"2+2?": "4"}}) as fake:
        (tmp_path / "data.jsonl").write_text("\n".join(orjson.dumps(d).decode() for d in DATASET) + "\n")
        config = tmp_path / "gateway.yaml"
        config.write_text(config_text(fake) + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool"))
        run = ("eval", "run", "--config", str(config), "--dataset", str(tmp_path / "data.jsonl"), "-s", "exact")

        out = cli(*run, "-c", "support-ft@2", "-c", "support", "--run-id", "half", "--json")
        assert out.exit_code == 0, out.output
        report = orjson.loads(out.stdout)
        assert report["runs"][0]["candidates"] == ["support-ft@2", "support"]
        assert {a: v["mean"] for a, v in report["scores"]["exact"].items()} == {"support-ft@2": 0.5, "support": 0.25}
        [(op, load), (op2, unload)] = fake.lora_calls
        served = load["lora_name"]
        assert op == "load_lora_adapter" and served.startswith("support-ft--v2--eval-")
        assert load["lora_path"] == "/loras/s2"
        assert (op2, unload) == ("unload_lora_adapter", {"lora_name": served})
        assert sorted(completions(fake)) == ["support-ft"] * 4 + [served] * 4  # production's name kept v1
        assert fake.loras == {"support-ft": "/loras/s1"}

        promote = ("adapters", "promote", "support-ft", "2", "--config", str(config), "--dsn", chdb_dsn())
        before = config.read_text()
        out = cli(*promote)
        assert out.exit_code == 1, out.output
        assert "support-ft@2: refused: evaluation gates fail" in out.output
        assert "exact>=0.75: exact is 0.5 in run half (support-ft@2)" in out.output
        assert config.read_text() == before

        v2.update({"3*3?": "9", "1+0?": "1"})  # a better version 2 (same path): evaluated again, it passes
        fake.lora_calls.clear()
        out = cli(*run, "-c", "support-ft@2", "--run-id", "all")
        assert out.exit_code == 0, out.output
        assert [op for op, _ in fake.lora_calls] == ["load_lora_adapter", "unload_lora_adapter"]
        out = cli(*promote)
        assert out.exit_code == 0, out.output
        assert "adapter support-ft: 1 -> 2" in out.output and "refused" not in out.output
        assert "    version: 2\n" in config.read_text()


def test_the_temporary_adapter_is_unloaded_when_the_run_fails_or_a_server_refuses_it(tmp_path):
    with vllm({}) as a, vllm({}) as b:
        (tmp_path / "data.jsonl").write_text(orjson.dumps(DATASET[0]).decode() + "\n")
        config = tmp_path / "gateway.yaml"
        config.write_text(config_text(a, b) + "telemetry: {enabled: false}\n")
        run = ("eval", "run", "--config", str(config), "--dataset", str(tmp_path / "data.jsonl"), "-c", "support-ft@2")

        out = cli(*run)  # loaded on both servers, then the run fails: unloaded from both
        assert out.exit_code == 2 and "telemetry is off" in out.output, out.output
        for fake in (a, b):
            assert [op for op, _ in fake.lora_calls] == ["load_lora_adapter", "unload_lora_adapter"]
            assert fake.loras == {"support-ft": "/loras/s1"}
            fake.lora_calls.clear()

        b.lora_error = (400, "LoRA rank 64 is greater than max_lora_rank 16.")
        out = cli(*run)
        assert out.exit_code == 2, out.output
        assert "candidate support-ft@2: vLLM backend 'v1' cannot load /loras/s2" in out.output
        assert "HTTP 400: LoRA rank 64 is greater than max_lora_rank 16." in out.output
        assert [op for op, _ in a.lora_calls] == ["load_lora_adapter", "unload_lora_adapter"]
        assert a.loras == {"support-ft": "/loras/s1"} and not completions(a) and not completions(b)

        out = cli(*run[:-1], "support-ft@3")
        assert out.exit_code == 2 and "adapter 'support-ft' has no version '3' (has 1, 2)" in out.output


def test_a_terminated_run_unloads_its_temporary_adapter(tmp_path):
    # SIGTERM (a CI cancel, `timeout`, Kubernetes) mid-run ends it as Ctrl-C does: the
    # temporary adapter does not stay loaded on production's server.
    with vllm({}) as fake:
        (tmp_path / "data.jsonl").write_text(orjson.dumps(DATASET[0]).decode() + "\n")
        config = tmp_path / "gateway.yaml"
        config.write_text(config_text(fake))
        fake.hold()  # the run's first call waits here
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "eval", "run", "--config", str(config),
                                 "--data-dir", str(tmp_path / "data"), "--dataset", str(tmp_path / "data.jsonl"),
                                 "-c", "support-ft@2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: completions(fake) or proc.poll() is not None, 120, "the run's first call")
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert [op for op, _ in fake.lora_calls] == ["load_lora_adapter"]
            proc.send_signal(signal.SIGTERM)
            fake.release()
            output = proc.communicate(timeout=120)[0].decode()
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode != 0, output
        assert [op for op, _ in fake.lora_calls] == ["load_lora_adapter", "unload_lora_adapter"], output
        assert fake.loras == {"support-ft": "/loras/s1"}
