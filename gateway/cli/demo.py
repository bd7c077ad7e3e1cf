"""``llm-gateway demo``: the gateway on embedded defaults, driven by the official OpenAI SDK.

Each step is a function taking the SDK client, so later features add steps without touching
the others.
"""

from __future__ import annotations

import time

import click
import openai

from gateway.app import build_app
from gateway.cache.demo import cache_step, with_demo_cache
from gateway.prompts.demo import demo_snapshot, prompt_step
from gateway.proxy.server import BackgroundServer


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
    usage = resp.usage
    click.echo(f"  usage: {usage.prompt_tokens if usage else '?'} prompt + "
               f"{usage.completion_tokens if usage else '?'} completion tokens; "
               f"backend {raw.headers.get('x-gateway-backend')}, request id {raw.headers.get('x-request-id')}, "
               f"{(time.perf_counter() - t0) * 1000:.1f} ms")


def streamed_chat(client: openai.OpenAI) -> None:
    _step("chat completion (streamed, SSE)")
    t0 = time.perf_counter()
    ttft: float | None = None
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
    click.echo(f"  TTFT {(ttft or 0.0) * 1000:.1f} ms, total {(time.perf_counter() - t0) * 1000:.1f} ms, "
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


def telemetry_query(client: openai.OpenAI) -> None:
    """The rows this demo created, through the saved query ``latency-by-model`` (shipped with the package)."""
    import httpx

    _step("telemetry: saved query latency-by-model over this demo's rows (llm_requests in ClickHouse)")
    root = str(client.base_url).rstrip("/").removesuffix("/v1")
    with httpx.Client(base_url=root, timeout=60, trust_env=False) as http:
        stats = http.post("/admin/telemetry/flush").json()
        if not stats.get("enabled"):
            click.echo("  telemetry is off (telemetry.enabled: false or LLM_GATEWAY_TELEMETRY=off)")
            return
        ingester = stats.get("ingester") or {}
        click.echo(f"  {stats['written']} requests logged, {ingester.get('rows', 0)} rows inserted into "
                   f"{ingester.get('target', '?')} (flushed: {'yes' if stats.get('flushed') else 'not yet'})")
        resp = http.post("/admin/query", json={"saved": "latency-by-model", "format": "table",
                                               "params": {"since_ms": _DEMO_START_MS[0]}})
    if resp.status_code != 200:
        click.echo(f"  query failed: HTTP {resp.status_code}: {resp.text[:500]}")
        return
    for line in resp.text.rstrip().splitlines():
        click.echo(f"  {line}")
    click.echo("  (more: llm-gateway query --list)")


_DEMO_START_MS = [0]
STEPS = [show_models, plain_chat, streamed_chat, embeddings, error_case, prompt_step, cache_step,
         telemetry_query]


def demo_config():
    """The demo's config: the embedded defaults plus a demo prompt, cache on."""
    return with_demo_cache(demo_snapshot())


def run_demo(snapshot=None, data_dir: str | None = None) -> None:
    """Run every demo step against a gateway started on a free loopback port.

    ``snapshot``: ``demo_config()`` unless given; ``data_dir``: where the embedded telemetry
    store lives (default ``$LLM_GATEWAY_DATA_DIR`` or ``./.llm-gateway``).
    """
    snapshot = snapshot or demo_config()
    _DEMO_START_MS[0] = int(time.time() * 1000)
    with BackgroundServer(build_app(snapshot, data_dir=data_dir)) as server:
        click.secho(f"llm-gateway running at {server.url} (embedded defaults, config hash "
                    f"{snapshot.content_hash}); clients use base_url={server.url}/v1", bold=True)
        # its own gateway on loopback: never through a proxy named in the environment
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-demo", max_retries=0,
                               http_client=openai.DefaultHttpxClient(trust_env=False))
        for step in STEPS:
            step(client)
        client.close()
    click.secho("\ndemo finished", fg="green")
