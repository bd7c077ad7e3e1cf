"""The gateway factory of the suite: a fake upstream, a config in front of it, gateways on loopback ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app import build_app
from gateway.config import load_config, parse_config
from gateway.proxy.server import BackgroundServer
from tests.support.fake_upstream import FakeUpstream

REPO = Path(__file__).resolve().parents[2]


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
        server = serve(yaml_text)
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


def serve(text: str | None = None, *, path=None, host: str | None = None, **build) -> BackgroundServer:
    """A gateway on a loopback port (not yet started: use it as a context manager), built from YAML text or
    from a config file (the file's folder resolves relative paths; hot reload watches it)."""
    snapshot = load_config(path) if path is not None else parse_config(text)
    return BackgroundServer(build_app(snapshot, **build), **({"host": host} if host else {}))
