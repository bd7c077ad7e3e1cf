"""Shared fixtures: a fake upstream, and a gateway built from a YAML config on a loopback port."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import build_app
from gateway.config import parse_config
from gateway.server import BackgroundServer
from tests.fake_upstream import FakeUpstream

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def upstream():
    with FakeUpstream() as fake:
        yield fake


def gateway_config(upstream_url: str, extra: str = "", backend_extra: str = "") -> str:
    """A config with backend ``fake`` (the fake upstream) serving public model ``gpt-test``."""
    return f"""
backends:
  fake:
    type: openai
    base_url: {upstream_url}
    api_key: sk-backend-secret
{backend_extra}
  mock:
    type: mock
models:
  gpt-test:
    targets: [{{backend: fake, model: up-model}}]
  same-name:
    targets: [{{backend: fake}}]
  mock-gpt:
    targets: [{{backend: mock}}]
{extra}
"""


@pytest.fixture
def make_gateway():
    """``make_gateway(yaml_text) -> BackgroundServer`` (stopped at test end)."""
    servers = []

    def factory(yaml_text: str) -> BackgroundServer:
        server = BackgroundServer(build_app(parse_config(yaml_text)))
        server.__enter__()
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def gateway(upstream, make_gateway):
    """A gateway in front of the fake upstream (model ``gpt-test`` → upstream ``up-model``)."""
    return make_gateway(gateway_config(upstream.url))

# Telemetry: gateways built by tests keep their embedded store (chDB) and spool in a per-session
# temp folder, never in the working directory's ./.llm-gateway (see tests/telemetry_support.py).
from tests.telemetry_support import isolate_telemetry_data  # noqa: E402,F401
