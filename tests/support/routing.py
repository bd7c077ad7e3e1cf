"""Two fake upstreams behind one model, shared by the routing tests."""

from __future__ import annotations

import pytest

from tests.support.fake_upstream import FakeUpstream

MSG = [{"role": "user", "content": "hi"}]
OK = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
      "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
      "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


@pytest.fixture
def two_upstreams():
    with FakeUpstream() as first, FakeUpstream() as second:
        yield first, second


def two_target_config(a_url: str, b_url: str, extra_model: str = "", extra: str = "", strategy="priority",
                      a_extra="", b_extra="") -> str:
    return f"""
backends:
  up-a: {{type: openai, base_url: "{a_url}", api_key: sk-a}}
  up-b: {{type: openai, base_url: "{b_url}", api_key: sk-b}}
models:
  m:
    strategy: {strategy}
    targets: [{{backend: up-a, model: model-a{a_extra}}}, {{backend: up-b, model: model-b{b_extra}}}]
{extra_model}
routing:
  seed: 1
  retry: {{attempts: 2, base_backoff_ms: 1, max_backoff_ms: 5, max_retry_after_ms: 1000}}
{extra}
"""
