"""``llm-gateway demo``: the gateway on embedded defaults, driven by the official OpenAI SDK.

Each step is a function taking the SDK client, so later features add steps without touching
the others.
"""

from __future__ import annotations

import time

import click
import openai

from gateway.app import build_app
from gateway.config import default_config
from gateway.server import BackgroundServer


def _step(title: str) -> None:
    click.secho(f"\n== {title}", fg="cyan", bold=True)


def show_models(client: openai.OpenAI) -> None:
    _step("GET /v1/models")
    for model in client.models.list():
        click.echo(f"  {model.id}")


def plain_chat(client: openai.OpenAI) -> None:
    _step("chat completion (JSON)")
    t0 = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=[{"role": "user", "content": "Say hello to the gateway."}])
    resp = raw.parse()
    click.echo(f"  answer: {resp.choices[0].message.content!r}")
    click.echo(f"  usage: {resp.usage.prompt_tokens} prompt + {resp.usage.completion_tokens} completion tokens; "
               f"backend {raw.headers.get('x-gateway-backend')}, request id {raw.headers.get('x-request-id')}, "
               f"{(time.perf_counter() - t0) * 1000:.1f} ms")


def streamed_chat(client: openai.OpenAI) -> None:
    _step("chat completion (streamed, SSE)")
    t0 = time.perf_counter()
    ttft = None
    click.echo("  answer: ", nl=False)
    stream = client.chat.completions.create(
        model="mock-gpt", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Stream something."}])
    usage = None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                ttft = ttft or time.perf_counter() - t0
                click.echo(choice.delta.content, nl=False)
    click.echo()
    click.echo(f"  TTFT {ttft * 1000:.1f} ms, total {(time.perf_counter() - t0) * 1000:.1f} ms, "
               f"usage {usage.completion_tokens if usage else '?'} completion tokens")


def embeddings(client: openai.OpenAI) -> None:
    _step("embeddings")
    resp = client.embeddings.create(model="mock-embed", input=["one", "two"])
    click.echo(f"  {len(resp.data)} vectors of {len(resp.data[0].embedding)} dimensions")


def error_case(client: openai.OpenAI) -> None:
    _step("an error: unknown model")
    try:
        client.chat.completions.create(model="gpt-unknown", messages=[{"role": "user", "content": "hi"}])
    except openai.NotFoundError as exc:
        click.echo(f"  HTTP {exc.status_code}: {exc.body['message'] if isinstance(exc.body, dict) else exc}")


STEPS = [show_models, plain_chat, streamed_chat, embeddings, error_case]


def run_demo() -> None:
    """Run every demo step against a gateway started on a free loopback port."""
    snapshot = default_config()
    with BackgroundServer(build_app(snapshot)) as server:
        click.secho(f"llm-gateway running at {server.url} (embedded defaults, config hash "
                    f"{snapshot.content_hash}); clients use base_url={server.url}/v1", bold=True)
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-demo", max_retries=0)
        for step in STEPS:
            step(client)
        client.close()
    click.secho("\ndemo finished", fg="green")
