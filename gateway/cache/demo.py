"""The cache step of ``llm-gateway demo``: the same deterministic request twice (a miss, then
a hit), then the same request streamed (the stored answer replayed as SSE).

``with_demo_cache(snapshot)`` turns the memory cache on in the demo's config (deterministic
mode: the other demo steps send no ``temperature: 0`` and are not cached).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import click
import openai

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

from gateway.config import ConfigSnapshot
from gateway.config.cache import CacheSettings


def with_demo_cache(snapshot: ConfigSnapshot) -> ConfigSnapshot:
    """``snapshot`` with ``cache: {enabled: true}`` (memory store) unless it configures a cache."""
    if snapshot.config.cache.enabled:
        return snapshot
    config = snapshot.config.model_copy(update={"cache": CacheSettings(enabled=True)})
    return dataclasses.replace(snapshot, config=config)


def cache_step(client: openai.OpenAI) -> None:
    """Miss, hit, and a streamed hit of one ``temperature: 0`` request to ``mock-gpt``."""
    click.secho("\n== cache: one deterministic request (temperature 0) twice, then streamed",
                fg="cyan", bold=True)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What does a response cache save?"}]
    for attempt in ("first ", "second"):
        t0 = time.perf_counter()
        raw = client.chat.completions.with_raw_response.create(model="mock-gpt", temperature=0, messages=messages)
        ms = (time.perf_counter() - t0) * 1000
        age = f", age {raw.headers['age']} s" if "age" in raw.headers else ""
        click.echo(f"  {attempt}: x-gateway-cache: {raw.headers.get('x-gateway-cache')}{age}, {ms:.1f} ms, "
                   f"answer {(raw.parse().choices[0].message.content or '')[:48]!r}")
    t0 = time.perf_counter()
    streamed = client.chat.completions.with_raw_response.create(model="mock-gpt", temperature=0, messages=messages,
                                                                stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
    click.echo(f"  stream: x-gateway-cache: {streamed.headers.get('x-gateway-cache')}, "
               f"{(time.perf_counter() - t0) * 1000:.1f} ms, the stored answer as SSE chunks ({len(text)} chars)")
