"""Shared fixtures: a fake upstream, and a gateway built from a YAML config on a loopback port."""

from __future__ import annotations

import pytest

from gateway.ownership.feature import LEDGER_FILE
from tests.support.gateway import gateway, make_gateway, upstream  # noqa: F401

# Telemetry: gateways built by tests keep their embedded store (chDB) and spool in a per-session
# temp folder, never in the working directory's ./.llm-gateway (see tests/support/telemetry.py).
from tests.support.telemetry import SESSION_DIR, isolate_telemetry_data  # noqa: E402,F401


@pytest.fixture(autouse=True)
def fresh_object_ledger():
    """Each test starts with an empty ownership ledger: the session's data folder is shared, and
    fake backends reuse ids (``file-abc``) that the ledger keeps for the first tenant to make them."""
    yield
    for suffix in ("", "-wal", "-shm"):
        (SESSION_DIR / f"{LEDGER_FILE}{suffix}").unlink(missing_ok=True)
