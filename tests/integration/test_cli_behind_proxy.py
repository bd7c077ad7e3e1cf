"""The command line on a machine whose environment names an HTTP proxy (a corporate proxy, or
an air-gapped machine whose proxy is unreachable): commands reach a gateway on this machine
directly, never through the proxy. Here the proxy is a closed port, so anything sent through it
fails. Every test runs the real ``python -m gateway`` in a subprocess."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.proxy.server import free_port
from tests.support.polling import wait_for

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(scope="module")
def closed_port() -> int:
    """A loopback port nothing listens on (bound, never listening, for the module's life)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def proxied_env(proxy_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k.upper() not in _PROXY_VARS and k != "LLM_GATEWAY_CONFIG"}
    proxy = f"http://127.0.0.1:{proxy_port}"
    for name in _PROXY_VARS[:3]:
        env[name] = env[name.lower()] = proxy
    return env


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False


def cli(*args: str, cwd, env, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


def test_the_demo_runs_with_a_proxy_in_the_environment(tmp_path, closed_port):
    out = cli("demo", cwd=tmp_path, env=proxied_env(closed_port))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "demo finished" in out.stdout


def test_commands_reach_the_local_gateway_not_the_proxy(tmp_path, closed_port):
    port = free_port()
    (tmp_path / "gateway.yaml").write_text(
        f"server: {{port: {port}}}\nbackends:\n  m: {{type: mock}}\nmodels:\n  x: {{targets: [{{backend: m}}]}}\n")
    env = proxied_env(closed_port)
    server = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    try:
        wait_for(lambda: ready(port), 60, "the gateway to be ready")
        query = cli("query", "SELECT 41 + 1 AS answer", "--format", "jsonl", cwd=tmp_path, env=env)
        assert query.returncode == 0, query.stderr
        assert '"answer":42' in query.stdout
        drift = cli("drift", "--model", "x", cwd=tmp_path, env=env)
        assert drift.returncode == 3, drift.stdout + drift.stderr  # through the gateway: too little data
        session = cli("sessions", "show", "s-none", cwd=tmp_path, env=env)
        assert session.returncode == 0, session.stderr
        assert "no requests logged" in session.stdout
    finally:
        server.terminate()
        server.wait(30)


def test_the_container_health_check_ignores_the_proxy(tmp_path, closed_port):
    """The Dockerfile's HEALTHCHECK asks the gateway in the same container: a proxy named in the
    container's environment must not make a healthy gateway look dead."""
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    [check] = re.findall(r"^HEALTHCHECK .*\\\n\s*CMD (.+)$", dockerfile, re.M)
    port = free_port()
    assert ":8080/" in check
    check = check.replace(":8080/", f":{port}/")
    env = proxied_env(closed_port)
    server = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--port", str(port)], cwd=tmp_path,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: ready(port), 60, "the gateway to be ready")
        out = subprocess.run(["sh", "-c", check], capture_output=True, text=True, timeout=30, env=env)
        assert out.returncode == 0, out.stderr
    finally:
        server.terminate()
        server.wait(30)
