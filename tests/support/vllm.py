"""How a real-vLLM test that cannot run ends: a skip locally, a failure in CI (which installs vLLM)."""

from __future__ import annotations

import os

import pytest


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)", pytrace=False)
    pytest.skip(reason)
