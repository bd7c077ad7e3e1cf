"""The environment variables the gateway itself reads, in one place.

Every ``LLM_GATEWAY_*`` setting is named and described here and read through ``read``, so
the list in the configuration reference (``docs/configuration.md``) is generated from the
code that uses them. (``${VAR}`` references inside ``gateway.yaml`` are the config's own and
are resolved by the loader.)
"""

from __future__ import annotations

import os

CONFIG = "LLM_GATEWAY_CONFIG"
DATA_DIR = "LLM_GATEWAY_DATA_DIR"
TELEMETRY = "LLM_GATEWAY_TELEMETRY"
ADMIN_KEY = "GATEWAY_ADMIN_KEY"
API_KEY = "LLM_GATEWAY_API_KEY"

VARIABLES: dict[str, str] = {
    CONFIG: "config file for every command when `--config` is not given "
            "(before ./gateway.yaml and ./config/gateway.yaml)",
    DATA_DIR: "embedded telemetry data folder (chDB store, spool) when neither `--data-dir` "
              "nor `telemetry.data_dir` says (default ./.llm-gateway)",
    TELEMETRY: "`off` (or 0/false/no) turns telemetry off whatever the config says",
    ADMIN_KEY: "admin key the command line sends to a running gateway "
               "(`query`, `drift`, `sessions`, `dataset`; `--admin-key` wins)",
    API_KEY: "bearer key `chains run` and `eval run` send to the gateway (`--api-key` wins)",
}


def read(name: str) -> str | None:
    """The value of one of ``VARIABLES`` (``None`` when unset or empty)."""
    if name not in VARIABLES:
        raise KeyError(f"{name} is not one of the gateway's environment variables")
    return os.environ.get(name) or None
