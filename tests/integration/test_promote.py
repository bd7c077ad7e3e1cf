"""``prompts promote|rollback`` and ``adapters promote|rollback`` on commented config files:
only the edited values change (comments and order stay), the running gateway hot-reloads the
file and serves the new version (a prompt's rendered version; an adapter's new path loaded on
the vLLM server), rollback goes back, and a promotion whose evaluation gate fails on the
candidate's newest finished run (embedded chDB) is refused with exit 1 unless ``--force``."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx
from click.testing import CliRunner

from gateway.cli.commands import main
from gateway.cli.yaml_edit import load, plain
from gateway.config.telemetry import ClickHouseSettings
from gateway.evals.tables import RunRecord, ScoreRecord, run_row, score_row
from gateway.telemetry.clickhouse import ClickHouseStore
from gateway.telemetry.values import encode_rows
from tests.support.fake_upstream import FakeVllm
from tests.support.gateway import serve
from tests.support.polling import wait_for
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml  # noqa: F401
from tests.support.vllm_fleet import MSG, backend_status

PROMPT = """\
# The greeting. Version 2 is friendlier.
description: Greets
versions:
  - version: 1
    messages: [{role: system, content: "Say hello."}]
  - version: 2   # friendlier
    messages: [{role: system, content: "Say hello warmly."}]
labels:
  production: 1     # what callers get
  staging: 2
"""

GATEWAY = """\
# Local test gateway.
server: {reload_interval_s: 0.05}
backends:
  mock: {type: mock}
models:
  greet:   # the greeter
    targets: [{backend: mock}]
    prompt: greet
"""


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def prompt_version(gw) -> str:
    r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "greet", "messages": MSG}, timeout=10)
    assert r.status_code == 200, r.text
    return r.headers["x-gateway-prompt-version"]


def test_prompt_promote_and_rollback_edit_the_file_and_the_gateway_serves_them(tmp_path):
    (tmp_path / "prompts").mkdir()
    prompt_file = tmp_path / "prompts" / "greet.yaml"
    prompt_file.write_text(PROMPT)
    config = tmp_path / "gateway.yaml"
    config.write_text(GATEWAY + "telemetry: {enabled: false}\n")
    with serve(path=config) as gw:
        assert prompt_version(gw) == "1"
        out = cli("prompts", "promote", "greet", "2", "--label", "production", "--config", str(config))
        assert out.exit_code == 0, out.output
        assert "label production: 1 -> 2" in out.output
        assert prompt_file.read_text() == PROMPT.replace("production: 1     #", "production: 2     #") \
            + "previous: {production: [1]}\n"
        wait_for(lambda: prompt_version(gw) == "2", what="the gateway serves version 2")

        out = cli("prompts", "rollback", "greet", "--config", str(config))
        assert out.exit_code == 0, out.output
        assert prompt_file.read_text() == PROMPT  # the emptied history goes too
        wait_for(lambda: prompt_version(gw) == "1", what="the gateway serves version 1 again")

        out = cli("prompts", "rollback", "greet", "--config", str(config))
        assert out.exit_code == 1 and "nothing to roll back to" in out.output
        out = cli("prompts", "promote", "greet", "7", "--config", str(config))
        assert out.exit_code == 1 and "no version 7 (has 1, 2)" in out.output
        out = cli("prompts", "promote", "greet", "2", "--label", "latest", "--config", str(config))
        assert out.exit_code == 1 and "'latest' is not a label name" in out.output
        assert prompt_file.read_text() == PROMPT


ADAPTERS = """\
# vLLM with a fine-tuned adapter.
server: {{reload_interval_s: 0.05}}
telemetry: {{enabled: false}}
backends:
  va: {{type: vllm, base_url: "{url}", vllm: {{scrape_interval_ms: 40}}}}   # the server
models:
  support:
    targets: [{{backend: va, model: support-ft}}]
adapters:
  support-ft:          # weekly fine-tune
    base_model: tiny-llama
    versions:
      1: /loras/s1     # June
      2: /loras/s2     # July
    version: 1
"""


def test_adapter_promote_loads_the_new_version_and_rollback_the_old(tmp_path):
    with FakeVllm("vllm-a") as fake:
        # The config is a symlink, as a Kubernetes ConfigMap mount: its target is what changes.
        (tmp_path / "mounted").mkdir()
        target = tmp_path / "mounted" / "gateway.yaml"
        config = tmp_path / "gateway.yaml"
        config.symlink_to(target)
        text = ADAPTERS.format(url=fake.url)
        target.write_text(text)
        with serve(path=config) as gw:
            wait_for(lambda: fake.loras == {"support-ft": "/loras/s1"}, what="version 1 loaded")
            out = cli("adapters", "promote", "support-ft", "2", "--config", str(config))
            assert out.exit_code == 0, out.output
            assert "adapter support-ft: 1 -> 2" in out.output
            promoted = text.replace("    version: 1\n", "    version: 2\n").replace(
                "  support-ft:          # weekly fine-tune\n",
                "  support-ft:          # weekly fine-tune\n    previous: [1]\n")
            assert config.is_symlink() and target.read_text() == promoted
            wait_for(lambda: fake.loras == {"support-ft": "/loras/s2"}, what="version 2 loaded by the gateway")
            wait_for(lambda: backend_status(gw, "va")["adapters"] == {"support-ft": "loaded"}, what="reported")

            out = cli("adapters", "rollback", "support-ft", "--config", str(config))
            assert out.exit_code == 0, out.output
            assert config.is_symlink() and target.read_text() == text  # `previous: []` is dropped
            wait_for(lambda: fake.loras == {"support-ft": "/loras/s1"}, what="version 1 loaded again")
            out = cli("adapters", "promote", "support-ft", "3", "--config", str(config))
            assert out.exit_code == 1 and "has no version 3 (has 1, 2" in out.output


def test_parallel_promotions_run_one_after_the_other(tmp_path):
    """Five `adapters promote` processes at once: each reads, edits and checks the file holding its
    lock, so the file ends as their printed steps applied one by one (none lost)."""
    config = tmp_path / "gateway.yaml"
    more = "".join(f"      {v}: /loras/s{v}\n" for v in range(3, 7))
    text = ADAPTERS.format(url="http://127.0.0.1:9/v1").replace("      2: /loras/s2     # July\n",
                                                                "      2: /loras/s2     # July\n" + more)
    config.write_text(text)
    code = "from gateway.cli.commands import main; main()"
    procs = [subprocess.Popen([sys.executable, "-c", code, "adapters", "promote", "support-ft", str(v),
                               "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for v in range(2, 7)]
    outs = [(p.communicate(timeout=300), p.returncode) for p in procs]
    assert all(rc == 0 for _, rc in outs), outs
    steps = {}
    for (out, _), _ in outs:
        m = re.search(r"adapter support-ft: (\d+) -> (\d+)", out)
        assert m, out
        steps[int(m[1])] = int(m[2])
    chain = [1]
    while chain[-1] in steps:
        chain.append(steps[chain[-1]])
    assert len(chain) == 6, steps  # each printed `before` is the `after` of the one before it
    adapter = plain(load(config.read_text()))["adapters"]["support-ft"]
    assert adapter["version"] == chain[-1] and adapter["previous"] == chain[:-1]


def test_a_missing_version_is_said_before_any_gate(tmp_path):
    config = tmp_path / "gateway.yaml"
    text = ADAPTERS.format(url="http://127.0.0.1:9/v1") + 'evaluations:\n  gates: {support-ft: ["judge>=0.8"]}\n'
    config.write_text(text)
    nowhere = ("--config", str(config), "--dsn", f"chdb://{tmp_path / 'no-store'}")
    for force in ((), ("--force",)):
        out = cli("adapters", "promote", "support-ft", "9", *nowhere, *force)
        assert out.exit_code == 1 and "has no version 9 (has 1, 2" in out.output, out.output
        assert "evaluation gates" not in out.output and "gates could not be read" not in out.output
    out = cli("adapters", "promote", "support-ft", "2", *nowhere)  # a version it has: the gates are read
    assert out.exit_code == 1 and "no embedded store" in out.output, out.output
    assert config.read_text() == text


def seed_run(database: str, candidate: str, judge: list[float], run_id: str, later_s: float = 0.0) -> None:
    store = ClickHouseStore(ClickHouseSettings(database=database), chdb_dsn())
    store.ensure()
    now = time.time() + later_s
    run = RunRecord(run_id, now, "data.jsonl", "h", [candidate], ["judge"], {}, items=len(judge))
    rows = [run_row(run, "running", None, 1), run_row(run, "finished", now + 1, 2)]
    rows += [score_row(ScoreRecord(run_id, now, candidate, i, f"id{i}", "judge", v, "", f"req-{i}", 100.0, 0.001, ""))
             for i, v in enumerate(judge)]
    by_table: dict[str, list] = {}
    for table, columns, row in rows:
        by_table.setdefault(table, [columns, []])[1].append(row)
    for table, (columns, values) in by_table.items():
        store.insert(table, columns, encode_rows(values), f"{run_id}-{table}")
    store.close()


def test_a_failing_gate_refuses_the_promotion_unless_forced(tdb, tmp_path):
    (tmp_path / "prompts").mkdir()
    prompt_file = tmp_path / "prompts" / "greet.yaml"
    prompt_file.write_text(PROMPT)
    config = tmp_path / "gateway.yaml"
    config.write_text(GATEWAY + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool")
                      + 'evaluations:\n  gates: {"greet@2": ["judge>=0.8"]}\n')
    args = ("prompts", "promote", "greet", "2", "--config", str(config), "--dsn", chdb_dsn())

    # No store there: the gates cannot be read, which refuses too; --force says so and promotes.
    nowhere = (*args[:-1], f"chdb://{tmp_path / 'no-store'}")
    out = cli(*nowhere)
    assert out.exit_code == 1 and "no embedded store" in out.output, out.output
    out = cli(*nowhere, "--force")
    assert out.exit_code == 0, out.output
    assert "the gates could not be read" in out.output and "promoting anyway (--force)" in out.output
    assert cli("prompts", "rollback", "greet", "--config", str(config)).exit_code == 0
    store = ClickHouseStore(ClickHouseSettings(database=tdb), chdb_dsn())
    store.ensure()  # the tables, empty
    store.close()
    out = cli(*args)  # no run yet
    assert out.exit_code == 1 and "no finished evaluation run of 'greet@2'" in out.output
    seed_run(tdb, "greet@2", [0.5, 0.6], "run-low")
    before = prompt_file.read_text()
    out = cli(*args)
    assert out.exit_code == 1, out.output
    assert "greet@2: refused: evaluation gates fail" in out.output
    assert "judge>=0.8: judge is 0.55 in run run-low (greet@2)" in out.output
    assert prompt_file.read_text() == before  # refused: unchanged

    out = cli(*args, "--force")
    assert out.exit_code == 0, out.output
    assert "promoting anyway (--force)" in out.output and "label production: 1 -> 2" in out.output
    out = cli("prompts", "rollback", "greet", "--config", str(config))
    assert out.exit_code == 0, out.output

    seed_run(tdb, "greet@2", [0.9, 0.8], "run-good", later_s=10)  # the newest run now passes
    out = cli(*args)
    assert out.exit_code == 0, out.output
    assert "refused" not in out.output
