"""The ``llm-gateway`` command line (click): ``serve``, ``demo``, ``check-config``, ``mock-server``,
``keys``, and the commands of other modules (``query``, ``db``, ``store``, ``prompts``, ``drift``, ``vllm``,
``sessions``, ``chains``, ``dataset``, ``eval``, ``collections``, ``config``), imported only when they run
(``gateway.cli.lazy``) so that ``--help`` stays quick.

Every command that reads a config resolves it the same way (``gateway.config.resolve``).
"""

from __future__ import annotations

import logging
import sys

import click

from gateway.cli.lazy import LazyCommand, LazyGroup
from gateway.cli.support import config_option, fail, load_cli_compiled, load_cli_config, say

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
STORE_START_WAIT_S = 30.0

LAZY_COMMANDS = {
    "query": LazyCommand("gateway.cli.telemetry:query",
                         "Run read-only SQL (SELECT/WITH/SHOW/DESCRIBE/EXPLAIN) or a saved query "
                         "over the telemetry."),
    "db": LazyCommand("gateway.cli.telemetry:db", "The telemetry store's schema."),
    "store": LazyCommand("gateway.cli.store:store",
                         "Serve the embedded telemetry store over ClickHouse's HTTP interface"),
    "prompts": LazyCommand("gateway.cli.prompts:prompts",
                           "Versioned prompts: list, show, diff, render, lock, promote, roll back."),
    "drift": LazyCommand("gateway.cli.drift:drift", "Compare the last 24 h with the 7 days before"),
    "bias": LazyCommand("gateway.cli.bias:bias", "Disparities across segments of the traffic, or across raters"),
    "adapters": LazyCommand("gateway.cli.adapters:adapters", "LoRA adapters served by vLLM: list, promote, roll back."),
    "vllm": LazyCommand("gateway.cli.vllm:vllm", "vLLM fleets: scrape a server, run managed servers."),
    "sessions": LazyCommand("gateway.cli.sessions:sessions",
                            "Sessions: requests grouped by x-gateway-session-id (and chains' steps)."),
    "chains": LazyCommand("gateway.cli.chains:chains", "Chains: multi-step workflows served as public models."),
    "dataset": LazyCommand("gateway.cli.dataset:dataset", "Fine-tuning datasets from the logged traffic."),
    "eval": LazyCommand("gateway.cli.evals:evals",
                        "Evaluations: score candidates on a dataset, compare runs, gate promotions."),
    "ingest": LazyCommand("gateway.cli.ingest:ingest", "Read the request log into ClickHouse until SIGTERM/SIGINT"),
    "collections": LazyCommand("gateway.cli.collections:collections",
                               "Retrieval collections: create, add documents, search, list."),
    "config": LazyCommand("gateway.cli.config:config",
                          "The config format: its JSON Schema and its generated reference."),
}


@click.group(cls=LazyGroup, lazy=LAZY_COMMANDS)
@click.version_option(package_name="llm-gateway", prog_name="llm-gateway")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default=None,
              help="Logging level (default: observability.logging.level of serve's config, else INFO).")
@click.option("--log-format", type=click.Choice(["text", "json"], case_sensitive=False), default=None,
              help="Log line format; json makes every line on stderr a JSON object (default: "
                   "observability.logging.format of serve's config, else text).")
@click.pass_context
def main(ctx: click.Context, log_level: str | None, log_format: str | None) -> None:
    """llm-gateway: an OpenAI-compatible LLM gateway."""
    from gateway.observability.logs import configure_logging

    log_level = log_level.upper() if log_level else None
    log_format = log_format.lower() if log_format else None
    ctx.obj = {"log_level": log_level, "log_format": log_format}
    configure_logging(log_level or "INFO", log_format or "text")


@main.command()
@config_option
@click.option("--host", default=None, help="Bind address (default: server.host from the config).")
@click.option("--port", type=int, default=None, help="Port (default: server.port from the config, 8080).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes sharing the port (SO_REUSEPORT), one event loop each.")
@click.option("--data-dir", default=None, help="Embedded telemetry data folder (chDB store, spool); "
              "default telemetry.data_dir, $LLM_GATEWAY_DATA_DIR or ./.llm-gateway.")
def serve(config_path: str | None, host: str | None, port: int | None, workers: int, data_dir: str | None) -> None:
    """Run the gateway in the foreground until SIGTERM/SIGINT."""
    from gateway.access.proxies import local_url
    from gateway.cli.preflight import port_in_use
    from gateway.config.resolve import resolve_config

    snapshot = load_cli_config(config_path, announce=False)
    server = snapshot.config.server
    host = host or server.host
    port = port if port is not None else server.port
    _configure_logging(snapshot)
    # Checked before anything is built: a refusal leaves no data folder, store or server behind.
    if port_in_use(host, port):
        fail(f"port {port} is already in use")
    _claim_data_dir(snapshot, data_dir, url=local_url(host, port) if port else None)
    say(f"config: {resolve_config(config_path).describe()}, hash {snapshot.content_hash}: "
        f"{len(snapshot.config.backends)} backends, {len(snapshot.config.models)} models")
    _check_access(snapshot, host, workers)
    metrics_dir = _prepare_metrics(snapshot, workers)
    _check_managed_vllm(snapshot, workers)
    from gateway.app import build_app
    from gateway.proxy.server import run_workers

    supervisor = _start_ingester(snapshot, config_path, data_dir)
    try:
        run_workers(lambda: build_app(snapshot, data_dir=data_dir, launch_servers=workers == 1, ingest="process"),
                    host, port, workers)
    finally:
        if supervisor is not None:
            supervisor.stop()
        if metrics_dir is not None:
            import shutil
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _configure_logging(snapshot) -> None:
    """Logging from ``observability.logging`` unless ``--log-level/--log-format`` said otherwise."""
    from gateway.observability.logs import configure_logging

    o = snapshot.config.observability
    cli = (click.get_current_context().find_root().obj or {})
    configure_logging(cli.get("log_level") or o.logging.level, cli.get("log_format") or o.logging.format)


def _prepare_metrics(snapshot, workers: int) -> str | None:
    """With ``--workers > 1`` and metrics on, prometheus-client's multiprocess mode in a fresh
    folder (returned when made here, to be removed after the workers stop)."""
    import os
    import tempfile

    from gateway.observability.metrics import MULTIPROC_ENV, prepare_multiprocess

    o = snapshot.config.observability
    if workers <= 1 or not o.metrics.enabled:
        return None
    made = None
    path = o.metrics.multiprocess_dir or os.environ.get(MULTIPROC_ENV)
    if not path:
        path = made = tempfile.mkdtemp(prefix="llm-gateway-metrics-")
    prepare_multiprocess(path)
    return made


def _start_ingester(snapshot, config_path: str | None, data_dir: str | None):
    """The ingester process beside the serving ones (``None`` with telemetry off, or when
    ``telemetry.ingester`` is ``external``: then ``llm-gateway ingest`` runs elsewhere)."""
    from gateway.ingest.supervisor import IngesterSupervisor
    from gateway.telemetry import telemetry_enabled

    if not telemetry_enabled(snapshot):
        return None
    if snapshot.config.telemetry.ingester == "external":
        say("telemetry.ingester is external: records wait in the request log until `llm-gateway ingest` "
            "(same config and data folder) reads them")
        return None
    cli = (click.get_current_context().find_root().obj or {})
    # The same --config (or none: the child resolves it as this process did, same cwd and environment).
    supervisor = IngesterSupervisor(config_path, data_dir, log_level=cli.get("log_level"),
                                    log_format=cli.get("log_format"))
    supervisor.start()
    t = snapshot.config.telemetry
    ddir = t.resolved_data_dir(data_dir)
    if t.resolved_dsn(ddir).startswith("chdb://"):
        # Serve once the embedded store answers, so the first ops query finds it (never required:
        # records wait in the log; readers find the store whenever it comes up).
        from gateway.store.availability import embedded_available
        from gateway.store.discovery import StoreLocator

        if embedded_available() and not supervisor.wait_until(lambda: StoreLocator(ddir).find() is not None,
                                                              STORE_START_WAIT_S):
            say(f"the embedded telemetry store did not start within {STORE_START_WAIT_S:.0f} s; serving anyway "
                "(records wait in the request log)", logging.WARNING)
    return supervisor


def _claim_data_dir(snapshot, data_dir: str | None, url: str | None = None) -> None:
    """One gateway per telemetry data folder: refuse (exit 2) when another holds it. ``url``:
    where this one serves, recorded in the folder so commands on this machine find it."""
    from gateway.cli.preflight import claim_data_dir
    from gateway.telemetry import telemetry_enabled

    if not telemetry_enabled(snapshot):
        return
    t = snapshot.config.telemetry
    ddir = t.resolved_data_dir(data_dir)
    dsn = t.resolved_dsn(ddir)
    refused = claim_data_dir(ddir, dsn[len("chdb://"):] if dsn.startswith("chdb://") else None, url)
    if refused:
        fail(refused)
    log_dir = t.log.resolved_dir(ddir)
    try:  # the request log must be writable before anything is served (every request writes it)
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        fail(f"cannot use the request log folder {log_dir} (telemetry.log.dir): {exc.strerror or exc}")


def _check_managed_vllm(snapshot, workers: int) -> None:
    """Workers never start vLLM servers (each would start its own): say how to run them."""
    managed = [n for n, b in snapshot.config.backends.items() if b.type == "vllm" and b.launch is not None]
    if workers > 1 and managed:
        say(f"warning: with --workers {workers} the gateway does not start managed vLLM servers "
            f"({', '.join(managed)}); run `llm-gateway vllm launch --config {snapshot.source}` beside it",
            logging.WARNING)


def _check_access(snapshot, host: str, workers: int) -> None:
    """Warn loudly about an open gateway on a public address, an admin API without a key there,
    and per-worker limits."""
    from gateway.access.admin_guard import warn_if_admin_open
    from gateway.access.auth import warn_if_open
    from gateway.config.access import all_keys

    warn_if_open(snapshot, host)
    warn_if_admin_open(snapshot.config.server.admin_key, host)
    cfg = snapshot.config
    if workers > 1 and cfg.limits.redis_url is None and any(
            k.rpm or k.tpm or k.max_concurrent or k.budget_usd for k in all_keys(cfg)):
        say(f"warning: limits are counted per worker without limits.redis_url: with --workers {workers} "
            "each key gets up to that many times its limits", logging.WARNING)


@main.command("check-config")
@click.argument("path", type=click.Path(dir_okay=False), required=False)
@config_option
def check_config(path: str | None, config_path: str | None) -> None:
    """Validate a config file and print a summary; exit 2 with path-qualified errors if invalid.

    PATH (or --config) defaults to the file every command would use."""
    compiled = load_cli_compiled(path or config_path, announce=False)
    snapshot = compiled.snapshot
    cfg = snapshot.config
    click.echo(f"{snapshot.source}: OK (hash {snapshot.content_hash})")
    click.echo(f"  server: {cfg.server.host}:{cfg.server.port}, body limit {cfg.server.body_limit_bytes} bytes, "
               f"upload limit {cfg.server.upload_limit_bytes} bytes")
    click.echo(f"  backends ({len(cfg.backends)}):")
    for name, b in cfg.backends.items():
        where = b.base_url or "in-process"
        key = "key set" if b.api_key else "no key"
        click.echo(f"    {name}: {b.type} {where} ({key})")
        if b.type == "vllm":
            from gateway.vllm.fleet import describe_backend

            click.echo(f"      {describe_backend(b)}")
    click.echo(f"  models ({len(cfg.models)}):")
    for name, m in cfg.models.items():
        targets = ", ".join(f"{t.backend}/{t.model or name}" for t in m.targets) or f"chain {m.chain}"
        click.echo(f"    {name} -> {targets}" + (f" (prompt {m.prompt})" if m.prompt else ""))
    prompts = compiled.prompts
    if prompts is not None and prompts.directory is not None:
        click.echo(f"  prompts ({len(prompts.prompts)}) in {prompts.directory}:")
        for name, p in sorted(prompts.prompts.items()):
            labels = ", ".join(f"{lb}={p.labels[lb].describe()}" for lb in sorted(p.labels)) or "no labels"
            click.echo(f"    {name}: versions {', '.join(map(str, sorted(p.versions)))}; {labels}")
    from gateway.config.access import all_keys, auth_mode

    keys = all_keys(cfg)
    click.echo(f"  auth: {auth_mode(cfg)}, {len(keys)} keys, limits in "
               f"{'redis' if cfg.limits.redis_url else 'memory'}, {len(cfg.plugins)} plugins")


@main.command()
@click.option("--data-dir", default=None, help="Embedded telemetry data folder (default $LLM_GATEWAY_DATA_DIR "
              "or ./.llm-gateway).")
def demo(data_dir: str | None) -> None:
    """Start the gateway on embedded defaults (mock backend) and drive it with the OpenAI SDK."""
    from gateway.cli.demo import demo_config, run_demo

    snapshot = demo_config()
    _claim_data_dir(snapshot, data_dir)  # like serve: a folder another gateway holds is refused in one line
    run_demo(snapshot, data_dir=data_dir)


@main.command("mock-server")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=9000, show_default=True)
@click.option("--ttft-ms", type=float, default=0.0, show_default=True)
@click.option("--itl-ms", type=float, default=0.0, show_default=True)
@click.option("--tokens", type=int, default=16, show_default=True)
@click.option("--chunk-tokens", type=int, default=1, show_default=True)
def mock_server(host: str, port: int, ttft_ms: float, itl_ms: float, tokens: int, chunk_tokens: int) -> None:
    """Serve the deterministic mock backend over HTTP (a fake upstream for load tests)."""
    from gateway.config import MockSettings
    from gateway.providers.mock.backend import build_mock_app
    from gateway.proxy.server import run_forever

    settings = MockSettings(ttft_ms=ttft_ms, itl_ms=itl_ms, tokens=tokens, chunk_tokens=chunk_tokens)
    run_forever(build_mock_app(settings), host, port)


@main.group()
def keys() -> None:
    """Virtual keys: create one, or hash an existing one."""


@keys.command("create")
@click.option("--tenant", required=True, help="Tenant (team) the key belongs to.")
@click.option("--id", "key_id", default=None, help="Key id for rows, headers and rules (default key-<hash prefix>).")
@click.option("--models", default=None, help="Comma-separated globs of allowed public models (default all).")
@click.option("--endpoints", default=None,
              help="Comma-separated globs of allowed paths below /v1/ ('default' = the inference endpoints; "
                   "default: those only), e.g. 'default,files*,batches*'.")
@click.option("--rpm", type=click.IntRange(min=1), default=None, help="Requests per minute.")
@click.option("--tpm", type=click.IntRange(min=1), default=None, help="Tokens per minute.")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=None, help="Requests in flight at once.")
@click.option("--budget-day", type=click.FloatRange(min=0, min_open=True), default=None, help="USD per UTC day.")
@click.option("--budget-month", type=click.FloatRange(min=0, min_open=True), default=None, help="USD per UTC month.")
def keys_create(tenant: str, key_id: str | None, models: str | None, endpoints: str | None, rpm: int | None,
                tpm: int | None, max_concurrent: int | None, budget_day: float | None,
                budget_month: float | None) -> None:
    """Print a new random key (shown once: hand it to the tenant) and the config entry to paste
    under ``keys:`` (it holds only the key's SHA-256)."""
    import yaml

    from gateway.access.keys import hash_key, new_key
    from gateway.config.access import VirtualKey

    key = new_key()
    entry: dict = {"tenant": tenant, "sha256": hash_key(key)}
    if key_id:
        entry["id"] = key_id
    if models:
        entry["models"] = [m.strip() for m in models.split(",") if m.strip()]
    if endpoints:
        entry["endpoints"] = [e.strip() for e in endpoints.split(",") if e.strip()]
    for name, value in (("rpm", rpm), ("tpm", tpm), ("max_concurrent", max_concurrent)):
        if value is not None:
            entry[name] = value
    budget = {k: v for k, v in (("day", budget_day), ("month", budget_month)) if v is not None}
    if budget:
        entry["budget_usd"] = budget
    try:
        VirtualKey.model_validate(entry)
    except Exception as exc:  # e.g. a malformed --id
        click.echo(f"invalid key settings: {exc}", err=True)
        sys.exit(2)
    click.echo(f"key (shown once, store it now): {key}", err=False)
    click.echo("config entry (under keys:):")
    click.echo("- " + yaml.safe_dump(entry, default_flow_style=True, sort_keys=False, width=10_000).strip())


@keys.command("hash")
def keys_hash() -> None:
    """Read a key on stdin and print the SHA-256 the config stores for it."""
    from gateway.access.keys import hash_key

    key = sys.stdin.readline().strip()
    if not key:
        click.echo("no key on stdin", err=True)
        sys.exit(2)
    click.echo(hash_key(key))
