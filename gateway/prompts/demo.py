"""The prompt step of ``llm-gateway demo``: a versioned prompt injected into a chat request,
the version in the response headers and in the request's ClickHouse row, and a feedback score.

``demo_snapshot()`` is the embedded default config plus one demo prompt (``greeter``) written
to a temporary folder, removed when the process exits.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click
import openai

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

from gateway.config import ConfigSnapshot, parse_config
from gateway.config.loader import DEFAULT_CONFIG_YAML

DEMO_PROMPT = """\
description: Greets the user on behalf of a product
versions:
  - version: 1
    note: plain
    variables: [{name: product, type: string}]
    messages:
      - {role: system, content: "You are the friendly assistant of {{ product }}."}
  - version: 2
    note: adds a tone
    variables:
      - {name: product, type: string}
      - {name: tone, type: string, default: cheerful}
    messages:
      - role: system
        content: "You are the {{ tone }} assistant of {{ product }}. Answer in one sentence."
    params: {temperature: 0.2}
labels:
  production: 2
  canary: {1: 50, 2: 50}
"""


def demo_snapshot() -> ConfigSnapshot:
    """The embedded defaults plus the ``greeter`` prompt (in a temporary folder)."""
    folder = Path(tempfile.mkdtemp(prefix="llm-gateway-demo-prompts-"))
    atexit.register(shutil.rmtree, folder, True)
    (folder / "greeter.yaml").write_text(DEMO_PROMPT)
    return parse_config(DEFAULT_CONFIG_YAML + f'prompts: {{dir: "{folder}", lock_file: "{folder}/versions.lock"}}\n',
                        "<embedded defaults + demo prompt>")


def prompt_step(client: openai.OpenAI) -> None:
    """Call ``mock-gpt`` with ``x-gateway-prompt: greeter`` and show what the prompt changed."""
    import httpx

    click.secho("\n== versioned prompt: x-gateway-prompt: greeter (label production), variables in extra_body",
                fg="cyan", bold=True)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hi there!"}]
    plain = client.chat.completions.create(model="mock-gpt", messages=messages)
    raw = client.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=messages, extra_headers={"x-gateway-prompt": "greeter"},
        extra_body={"prompt": {"variables": {"product": "llm-gateway"}}})
    resp = raw.parse()
    rid = raw.headers.get("x-request-id")
    click.echo(f"  prompt {raw.headers.get('x-gateway-prompt')} version {raw.headers.get('x-gateway-prompt-version')} "
               f"(label {raw.headers.get('x-gateway-prompt-label')}) injected: prompt tokens "
               f"{plain.usage.prompt_tokens if plain.usage else '?'} without it, "
               f"{resp.usage.prompt_tokens if resp.usage else '?'} with it")
    root = str(client.base_url).rstrip("/").removesuffix("/v1")
    with httpx.Client(base_url=root, timeout=60, trust_env=False) as http:
        fb = http.post("/v1/feedback", json={"request_id": rid, "score": 1.0, "label": "thumbs_up"})
        click.echo(f"  POST /v1/feedback -> HTTP {fb.status_code}")
        stats = http.post("/admin/telemetry/flush").json()
        if not stats.get("enabled"):
            return
        row = http.post("/admin/query", json={
            "sql": "SELECT prompt_id, prompt_version, prompt_label, experiment_arm, status_code "
                   "FROM llm_requests WHERE request_id = {rid:UUID}",
            "params": {"rid": rid}, "format": "table"})
    click.echo(f"  its row in llm_requests ({rid}):")
    for line in row.text.rstrip().splitlines():
        click.echo(f"  {line}")
    click.echo("  (compare versions: llm-gateway query --saved prompt-versions)")
