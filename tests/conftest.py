"""Shared fixtures: a fake upstream, and a gateway built from a YAML config on a loopback port."""

from __future__ import annotations

from tests.support.gateway import gateway, make_gateway, upstream  # noqa: F401

# Telemetry: gateways built by tests keep their embedded store (chDB) and spool in a per-session
# temp folder, never in the working directory's ./.llm-gateway (see tests/support/telemetry.py).
from tests.support.telemetry import isolate_telemetry_data  # noqa: E402,F401
