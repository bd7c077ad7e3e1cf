"""Config validation with path-qualified errors, and the CLI (check-config, serve, demo)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import httpx
import pytest

from gateway.config import ConfigError, parse_config
from gateway.proxy.server import free_port
from tests.support.gateway import REPO
from tests.support.polling import wait_for


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def test_unknown_backend_is_named_with_its_path():
    out = problems("backends:\n  vllm-a: {type: vllm, base_url: 'http://x/v1'}\n"
                   "models:\n  chat-fast:\n    targets: [{backend: vlm-a}]\n")
    assert out == ['models.chat-fast.targets[0].backend: unknown backend "vlm-a" (known: vllm-a)']


def test_unknown_keys_and_bad_types_are_rejected_with_paths():
    out = problems("backends:\n  a: {type: openai, base_url: 'http://x', timeout: 3}\n"
                   "server: {port: high}\n")
    assert 'backends.a.timeout: unknown key "timeout" (did you mean "timeouts"?)' in out
    assert any(p.startswith("server.port:") for p in out)
    assert problems("backends:\n  a: {type: openai}\n") == ['backends.a: backend type "openai" needs a base_url']


def test_env_references(monkeypatch):
    monkeypatch.setenv("GW_TEST_KEY", "sk-from-env")
    snap = parse_config("backends:\n  a: {type: openai, base_url: 'http://x/v1', api_key: '${GW_TEST_KEY}'}\n")
    assert snap.config.backends["a"].api_key == "sk-from-env"
    assert "sk-from-env" not in repr(snap.config)  # keys stay out of reprs (and so out of logs)
    monkeypatch.delenv("GW_TEST_KEY")
    assert problems("backends:\n  a: {type: openai, base_url: 'http://x', api_key: '${GW_TEST_KEY}'}\n") == [
        "backends.a.api_key: environment variable GW_TEST_KEY is not set"]
    snap = parse_config("backends:\n  a: {type: openai, base_url: 'http://x', api_key: '${GW_TEST_KEY:-none}'}\n")
    assert snap.config.backends["a"].api_key == "none"


def test_content_hash_tracks_the_file_not_the_secret(monkeypatch):
    text = "backends:\n  a: {type: openai, base_url: 'http://x', api_key: '${K}'}\n"
    monkeypatch.setenv("K", "one")
    h1 = parse_config(text).content_hash
    monkeypatch.setenv("K", "two")
    assert parse_config(text).content_hash == h1
    assert parse_config(text + "# edit\n").content_hash != h1


def run_cli(*args, cwd=REPO, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, **kw)


def test_check_config_on_the_shipped_example():
    out = run_cli("check-config", "config/gateway.yaml", env={**os.environ, "OPENAI_API_KEY": "sk-x"})
    assert out.returncode == 0, out.stderr
    assert "OK (hash" in out.stdout and "models" in out.stdout


_SERVED = "backends: {m: {type: mock}}\nmodels:\n  m: {targets: [{backend: m}]}\n"
# A config the gateway refuses: in the file itself, or in a prompt, chain or plugin it names
# (those its features compile: the same refusal, before anything is bound).
BAD = {
    "config": ("models:\n  m:\n    targets: [{backend: nope}]\n", {},
               ['models.m.targets[0].backend: unknown backend "nope"']),
    "prompt": (_SERVED, {"prompts/greet.yaml": "versions: [{version: 1, messages: [{role: system, content: '{{ who }}'}]}]\n"},
               ["prompts/greet.yaml: versions[0] (version 1).messages[0].content: template uses undeclared variable(s) who"]),
    "chain": (_SERVED, {"chains/c.yaml": "steps: [{name: s, model: nope, include_messages: true}]\n"},
              ['chains/c.yaml: steps[0] (s).model: unknown model "nope"']),
    "plugin": (_SERVED + 'plugins: [{path: "nope.module:X"}]\n', {}, ["plugins[0].path:", "No module named 'nope'"]),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_config_refuses_to_start_with_the_same_message(tmp_path, kind):
    text, files, expected = BAD[kind]
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(content)
    checked = run_cli("check-config", str(bad))
    served = run_cli("serve", "--config", str(bad), "--port", str(free_port()))
    assert checked.returncode == 2 and served.returncode == 2
    assert all(e in checked.stderr for e in expected), checked.stderr
    assert checked.stderr == served.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_and_stops_on_sigterm(workers, tmp_path):
    port = free_port()
    config = tmp_path / "gateway.yaml"
    # Several workers need a ClickHouse server for telemetry (embedded chDB is one process only).
    config.write_text("backends:\n  mock: {type: mock}\nmodels:\n  mock-gpt: {targets: [{backend: mock}]}\n"
                      + ("telemetry: {enabled: false}\n" if workers > 1 else ""))
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port),
                             "--workers", str(workers)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []  # read as they come: every worker must be listening before the SIGTERM
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        def ready() -> bool:
            assert proc.poll() is None, "serve exited:\n" + "".join(lines)
            if sum("listening on" in line for line in lines) < workers:
                return False
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=60, what="every worker to listen and serve to be ready")
        r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30,
                       json={"model": "mock-gpt", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=30)
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert out.count("listening on") == workers and out.count("shutting down") == workers


def test_demo_runs_end_to_end(tmp_path):
    out = run_cli("demo", env={**os.environ, "LLM_GATEWAY_DATA_DIR": str(tmp_path / "data")})
    assert out.returncode == 0, out.stdout + out.stderr
    for expected in ("chat completion (JSON)", "chat completion (streamed, SSE)", "HTTP 404", "demo finished"):
        assert expected in out.stdout
