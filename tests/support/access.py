"""Virtual keys, an access config and request helpers shared by the access, plugin and leak tests."""

from __future__ import annotations

import hashlib

import httpx
import openai

from tests.support.gateway import gateway_config

KEY_A = "sk-gw-team-a-0123456789abcdef"
KEY_B = "sk-gw-team-b-0123456789abcdef"
KEY_OFF = "sk-gw-disabled-0123456789abcd"
MSG = [{"role": "user", "content": "hi"}]
CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def access_config(upstream_url: str, key_a: str = "", extra: str = "") -> str:
    """``gpt-test`` (fake upstream) and ``mock-gpt``; team-a may use gpt-* only, team-b anything."""
    return gateway_config(upstream_url, extra=f"""
telemetry: {{enabled: false}}
keys:
  - {{tenant: team-a, id: team-a-main, sha256: {sha(KEY_A)}, models: ["gpt-*", "same-*"],
      metadata: {{cost_center: "cc-42"}}{', ' + key_a if key_a else ''}}}
  - {{tenant: team-b, sha256: "{sha(KEY_B)}"}}
  - {{tenant: team-c, sha256: "{sha(KEY_OFF)}", disabled: true}}
{extra}""")


def sdk(gw, key: str | None = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key or "unused", max_retries=0)


def post(gw, key: str | None = KEY_A, body: dict | None = None, **headers) -> httpx.Response:
    h = {"Authorization": f"Bearer {key}"} if key else {}
    h.update(headers)
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body or {"model": "gpt-test", "messages": MSG},
                      headers=h, timeout=30)


def write_atomically(path, text: str) -> None:
    """Replace a watched config file in one step (the watcher never sees it half written)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
