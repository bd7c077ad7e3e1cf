"""A two-backend vLLM fleet config and readers of its admin status, shared by the fleet tests."""

from __future__ import annotations

import os

import httpx

MSG = [{"role": "user", "content": "hi"}]


def fleet_config(a, b, *, interval_ms: float = 40, strategy: str = "vllm-load", extra: str = "") -> str:
    scrape = f"{{scrape_interval_ms: {interval_ms}, timeout_ms: 500}}"
    return f"""
telemetry: {{enabled: false}}
backends:
  va: {{type: vllm, base_url: "{a.url}", vllm: {scrape}}}
  vb: {{type: vllm, base_url: "{b.url}", vllm: {scrape}}}
models:
  tiny:
    strategy: {strategy}
    targets: [{{backend: va, model: tiny-llama}}, {{backend: vb, model: tiny-llama}}]
routing:
  retry: {{attempts: 1}}
  circuit_breaker: {{consecutive_failures: 3, cooldown_s: 30}}
{extra}"""


def admin(gw, path: str = "/admin/vllm") -> dict:
    return httpx.get(f"{gw.url}{path}", timeout=10).json()


def backend_status(gw, name: str) -> dict:
    return next(b for b in admin(gw)["backends"] if b["backend"] == name)


def scraped(gw, name: str, **expect) -> bool:
    snap = backend_status(gw, name)["snapshot"]
    return snap is not None and all(snap[k] == v for k, v in expect.items())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
