"""Prompt files and messages shared by the prompt tests."""

from __future__ import annotations

from pathlib import Path

MSG = [{"role": "user", "content": "hi"}]
OK = {"id": "c", "object": "chat.completion", "created": 1, "model": "up-model",
      "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}

GREET = """
description: greeting
versions:
  - version: 1
    note: first
    variables: [{name: name, type: string}]
    messages: [{role: system, content: "v1: greet {{ name }}"}]
    params: {temperature: 0.1, max_tokens: 50}
  - version: 2
    variables:
      - {name: name, type: string}
      - {name: count, type: integer, default: 2}
    messages: [{role: system, content: "v2: greet {{ name }} {{ count }} times"}]
  - version: 3
    mode: replace_system
    messages:
      - {role: system, content: "v3 static"}
      - {role: user, content: "example question"}
labels:
  production: 1
  staging: 2
  canary: {1: 70, 2: 30}
"""


def write_prompts(directory: Path, **files: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / f"{name}.yaml").write_text(text)
    return directory
