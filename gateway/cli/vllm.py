"""``llm-gateway vllm …``: look at a vLLM server the way the gateway does, and run a config's
managed servers on their own (beside ``serve --workers N``, whose workers never start them)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import click

from gateway.cli.support import config_option


@click.group()
def vllm() -> None:
    """vLLM fleets: scrape a server, run managed servers."""


@vllm.command("scrape")
@click.argument("url")
@click.option("--timeout", type=float, default=5.0, show_default=True, help="Seconds per request.")
def scrape(url: str, timeout: float) -> None:
    """Read URL's /health and /metrics once and print the load snapshot routing would use.

    URL: the server (http://host:8000) or its API base (http://host:8000/v1)."""
    from gateway.config.models import Backend
    from gateway.config.vllm import VllmScrape
    from gateway.routing.health import HealthRegistry
    from gateway.vllm.scraper import Scraper

    async def once() -> dict:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            scraper = Scraper("cli", Backend(type="vllm", base_url=url), VllmScrape(timeout_ms=timeout * 1000),
                              HealthRegistry(), lambda: session)
            ok = await scraper.scrape_once()
            return {"ok": ok, **scraper.status()}

    result = asyncio.run(once())
    click.echo(json.dumps({k: result[k] for k in ("ok", "metrics_url", "health_url", "last_error", "snapshot")},
                          indent=2))
    sys.exit(0 if result["ok"] else 1)


@vllm.command("launch")
@config_option
@click.option("--data-dir", default=None, help="Where server logs go (<data-dir>/vllm/<backend>.log).")
def launch(config_path: str | None, data_dir: str | None) -> None:
    """Start the config's managed vLLM servers (``launch:`` blocks), keep them running
    (restarts with backoff) and stop them on SIGTERM/SIGINT. No gateway is served."""
    from gateway.cli.support import load_cli_config
    from gateway.routing.health import HealthRegistry
    from gateway.vllm.fleet import Fleet

    snapshot = load_cli_config(config_path)
    cfg = snapshot.config
    names = [n for n, b in cfg.backends.items() if b.type == "vllm" and b.launch is not None]
    if not names:
        click.echo(f"{snapshot.source}: no backend has a launch: block", err=True)
        sys.exit(2)

    async def run() -> None:
        fleet = Fleet(HealthRegistry(), cfg.telemetry.resolved_data_dir(data_dir) / "vllm")
        await fleet.start()
        fleet.sync(cfg)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        click.echo(f"managing {', '.join(names)}; logs in {fleet.servers[names[0]].log_path.parent}")
        seen: dict[str, str] = {}
        try:
            while not stop.is_set():
                for entry in fleet.status()["backends"]:
                    state = f"{entry['state']} ({(entry['managed'] or {}).get('state')})"
                    if seen.get(entry["backend"]) != state:
                        seen[entry["backend"]] = state
                        click.echo(f"{entry['backend']}: {state}")
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except TimeoutError:
                    pass
        finally:
            click.echo("stopping managed servers")
            await fleet.stop()

    asyncio.run(run())
