"""The command line as an operator meets it: which config each command reads, what ``serve``
refuses before building anything, log options, JSON logs, and a ``--help`` that imports
nothing heavy. Every test runs the real ``python -m gateway`` in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from gateway.proxy.server import free_port
from tests.support.polling import wait_for

MINIMAL = "backends:\n  m: {type: mock}\nmodels:\n  x: {targets: [{backend: m}]}\n"
BAD = "models:\n  m:\n    targets: [{backend: nope}]\n"
BAD_LINE = 'models.m.targets[0].backend: unknown backend "nope"'


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LLM_GATEWAY_CONFIG"}
    env.update(extra)
    return env


def cli(*args: str, cwd, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=cli_env(**env))


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


# --- which config --------------------------------------------------------------------


def test_one_resolution_order_and_one_line_saying_which(tmp_path):
    for name in ("explicit.yaml", "env.yaml", "gateway.yaml", "config/gateway.yaml"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(MINIMAL)

    def used(*args: str, **env: str) -> str:
        out = cli("chains", "list", *args, cwd=tmp_path, **env)
        assert out.returncode == 0, out.stderr
        assert len(out.stderr.splitlines()) == 1, out.stderr  # one line, on stderr
        return out.stderr.strip()

    env_file = str(tmp_path / "env.yaml")
    assert used("--config", "explicit.yaml", LLM_GATEWAY_CONFIG=env_file) == "config: explicit.yaml (--config)"
    assert used(LLM_GATEWAY_CONFIG=env_file) == f"config: {env_file} ($LLM_GATEWAY_CONFIG)"
    assert used() == "config: gateway.yaml (found in the working directory)"
    (tmp_path / "gateway.yaml").unlink()
    assert used() == "config: config/gateway.yaml (found in the working directory)"
    (tmp_path / "config" / "gateway.yaml").unlink()
    assert used().startswith("config: <embedded defaults> (no --config, $LLM_GATEWAY_CONFIG, ./gateway.yaml")


@pytest.mark.parametrize("command", [
    ("serve", "--port", "0"), ("check-config",), ("query", "SELECT 1"), ("drift",), ("sessions", "show", "s-1"),
    ("dataset", "export"), ("prompts", "list"), ("chains", "list"), ("db", "migrate", "--print-ddl"),
    ("vllm", "launch"),
], ids=lambda c: " ".join(c[:2]))
def test_every_command_reads_the_config_the_order_gives(command, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    out = cli(*command, cwd=tmp_path, LLM_GATEWAY_CONFIG=str(bad))
    assert out.returncode == 2, out.stdout + out.stderr
    assert BAD_LINE in out.stderr


# --- serve refuses early ---------------------------------------------------------------


def test_serve_on_a_busy_port_says_so_in_one_line_and_creates_nothing(tmp_path):
    started = tmp_path / "vllm-started"
    fake_python = tmp_path / "fake-python"  # a managed "vLLM" that leaves a mark if it is ever launched
    fake_python.write_text(f"#!/bin/sh\ntouch {started}\nsleep 30\n")
    fake_python.chmod(0o755)
    config = tmp_path / "gateway.yaml"
    config.write_text(MINIMAL.replace("backends:\n", f"""backends:
  local: {{type: vllm, base_url: "http://127.0.0.1:{free_port()}/v1", launch: {{model: m, python: "{fake_python}"}}}}
"""))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = cli("serve", "--port", str(port), "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
        json_out = cli("--log-format", "json", "serve", "--port", str(port), cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == f"port {port} is already in use\n"
    assert not (tmp_path / "data").exists() and not (tmp_path / ".llm-gateway").exists()
    assert not started.exists()
    [record] = [json.loads(line) for line in json_out.stderr.splitlines()]
    assert json_out.returncode == 2 and record["level"] == "ERROR" and record["msg"] == f"port {port} is already in use"


def test_a_second_gateway_on_a_held_data_dir_is_refused_in_one_line(tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(MINIMAL)
    data, port = tmp_path / "data", free_port()
    first = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port), "--data-dir", str(data)],
                             cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: ready(port), 60, "the first gateway to be ready")
        second = cli("serve", "--port", str(free_port()), "--data-dir", str(data), cwd=tmp_path)
        assert second.returncode == 2 and second.stdout == ""
        [line] = second.stderr.splitlines()
        assert f"the data directory {data} is in use by another gateway (pid {first.pid})" in line
        assert ready(port)  # the first one is untouched
    finally:
        first.terminate()
        first.wait(30)
    assert first.returncode == 0


def test_the_demo_refuses_a_data_dir_a_running_gateway_holds(tmp_path):
    """Run in the folder of a serving gateway, the demo would write into that gateway's request
    log (its rows later ingested into the real store) and fail to query: it is refused at once."""
    (tmp_path / "gateway.yaml").write_text(MINIMAL)
    data, port = tmp_path / "data", free_port()
    first = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port), "--data-dir", str(data)],
                             cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: ready(port), 60, "the gateway to be ready")
        log_before = sorted(p.name for p in (data / "log").rglob("*.seg"))
        demo = cli("demo", "--data-dir", str(data), cwd=tmp_path)
        assert demo.returncode == 2 and demo.stdout == "", demo.stdout[-2000:]
        [line] = demo.stderr.splitlines()
        assert f"the data directory {data} is in use by another gateway (pid {first.pid})" in line
        assert sorted(p.name for p in (data / "log").rglob("*.seg")) == log_before
        assert ready(port)
    finally:
        first.terminate()
        first.wait(30)


def test_commands_find_a_gateway_served_on_another_port_than_the_configs(tmp_path):
    """``serve --port`` overrides the config's port; ``query``, ``drift`` and ``sessions`` still
    reach that gateway (it records its address in the data folder it holds)."""
    (tmp_path / "gateway.yaml").write_text(f"server: {{port: {free_port()}}}\n" + MINIMAL)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port)],
                              cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: ready(port), 60, "the gateway to be ready")
        query = cli("query", "SELECT 41 + 1 AS answer", "--format", "jsonl", cwd=tmp_path)
        assert query.returncode == 0 and '"answer":42' in query.stdout, query.stderr
        drift = cli("drift", "--model", "x", cwd=tmp_path)
        assert drift.returncode == 3, drift.stdout + drift.stderr  # answered by the gateway: too little data
        session = cli("sessions", "show", "s-none", cwd=tmp_path)
        assert session.returncode == 0 and "no requests logged" in session.stdout, session.stderr
    finally:
        server.terminate()
        server.wait(30)
    assert server.returncode == 0


# --- logging ---------------------------------------------------------------------------


def test_log_level_takes_only_valid_levels_in_any_case(tmp_path):
    bad = cli("--log-level", "verbose", "check-config", cwd=tmp_path)
    assert bad.returncode == 2 and "'verbose' is not one of" in bad.stderr and "Traceback" not in bad.stderr
    for level in ("warning", "DEBUG", "Error"):
        ok = cli("--log-level", level, "check-config", cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr


def test_json_log_format_makes_every_line_json(tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(MINIMAL + "observability:\n  logging: {access_log: true}\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "--log-format", "json", "serve", "--port", str(port),
                             "--data-dir", str(tmp_path / "data")], cwd=tmp_path, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: ready(port), 60, "the gateway to be ready")
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                       json={"model": "x", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    records = [json.loads(line) for line in out.splitlines()]  # every line, or this raises
    messages = [r["msg"] for r in records]
    assert any(m.startswith("config: gateway.yaml (found in the working directory)") for m in messages)
    assert any("listening on" in m for m in messages) and any("shutting down" in m for m in messages)
    assert any(r["logger"] == "gateway.access" and r.get("status") == 200 for r in records)
    assert any(r["logger"] == "gateway.telemetry" for r in records)


# --- --help ----------------------------------------------------------------------------

HEAVY = ("chdb", "tiktoken", "aiohttp", "clickhouse_connect", "openai", "redis", "jinja2", "pydantic",
         "gateway.app", "gateway.config.models")


def test_help_imports_none_of_the_heavy_modules(tmp_path):
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "gateway", "--help"], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path, env=cli_env())
    assert out.returncode == 0 and "serve" in out.stdout and "query" in out.stdout and "config" in out.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "gateway.cli.commands" in imported
    loaded = sorted(m for m in imported for heavy in HEAVY if m == heavy or m.startswith(heavy + "."))
    assert loaded == []


def test_help_uses_no_deprecated_click_api(tmp_path):
    out = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-m", "gateway", "--help"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path, env=cli_env())
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "serve" in out.stdout


def test_the_help_summaries_are_the_commands_own():
    from gateway.cli.commands import LAZY_COMMANDS

    for name, lazy in LAZY_COMMANDS.items():
        command = lazy.load()
        assert command.name == name
        assert command.get_short_help_str(limit=1000).startswith(lazy.summary), name
