"""CLI commands for telemetry: ``llm-gateway query`` and ``llm-gateway db migrate``.

``query`` runs read-only SQL (or a saved query) and prints what ClickHouse renders:

- with a server DSN (``http(s)://``), against the server directly;
- with the embedded store (chDB), through the running gateway's ``POST /admin/query``
  (``--url``, default: the address the gateway holding the data folder recorded, else
  ``http://<server.host>:<server.port>``), because the gateway owns the
  directory; when no gateway answers, by opening the directory itself.

The admin key comes from ``--admin-key``, ``$GATEWAY_ADMIN_KEY`` or the config's
``server.admin_key``.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from gateway.cli.local_http import gateway_url
from gateway.cli.store_client import DATA_DIR_OPTION, DSN_OPTION, query_store, query_via_gateway, store_settings
from gateway.cli.support import config_option, load_cli_config
from gateway.config import environment
from gateway.telemetry.queries import FORMATS, QueryRejected, clickhouse_format, resolve, saved_queries


def _parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not name=value", param_hint="--param")
        out[key.strip()] = value
    return out


@click.command()
@click.argument("sql", required=False)
@click.option("--saved", default=None, help="Run a saved query by name (see --list).")
@click.option("--param", "-p", "params", multiple=True, help="Query parameter name=value (repeatable).")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="table", show_default=True)
@click.option("--list", "list_saved", is_flag=True, help="List the saved queries and exit.")
@click.option("--url", default=None, help="Gateway base URL to query through (embedded store).")
@click.option("--admin-key", envvar=environment.ADMIN_KEY, default=None, help="Admin key ($GATEWAY_ADMIN_KEY).")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for the answer.")
@config_option
@DATA_DIR_OPTION
@DSN_OPTION
def query(sql: str | None, saved: str | None, params: tuple[str, ...], fmt: str, list_saved: bool,
          url: str | None, admin_key: str | None, timeout: float, config_path: str | None,
          data_dir: str | None, dsn: str | None) -> None:
    """Run read-only SQL (SELECT/WITH/SHOW/DESCRIBE/EXPLAIN) or a saved query over the telemetry."""
    snapshot = load_cli_config(config_path)
    t = snapshot.config.telemetry
    if list_saved:
        for q in saved_queries(t.queries_dir).values():
            defaults = ", ".join(f"{k}={v}" for k, v in q.defaults.items())
            click.echo(f"{q.name:24} {q.description}" + (f" [{defaults}]" if defaults else ""))
        return
    given = _parse_params(params)
    try:
        ch_format, _ = clickhouse_format(fmt)
        resolved_sql, resolved_params = resolve(sql, saved, given, t.queries_dir)
    except QueryRejected as exc:
        raise click.UsageError(str(exc)) from None
    settings, store_dsn = store_settings(snapshot, dsn, data_dir)
    data = None
    target_url = url or gateway_url(snapshot, data_dir)  # None: --data-dir names a folder no gateway holds
    if target_url and (url or (dsn is None and store_dsn.startswith("chdb://"))):
        server = snapshot.config.server
        payload: dict[str, Any] = {"format": fmt, "params": given}
        payload.update({"saved": saved} if saved else {"sql": sql})
        data = query_via_gateway(target_url, admin_key or server.admin_key, payload, timeout)
        if data is None and url:
            raise click.ClickException(f"no gateway answers at {url}")
    if data is None:
        data = query_store(settings, store_dsn, resolved_sql, resolved_params, ch_format, t.queries)
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


@click.group()
def db() -> None:
    """The telemetry store's schema."""


@db.command("migrate")
@click.option("--print-ddl", is_flag=True, help="Print the DDL for this config instead of applying it.")
@config_option
@DATA_DIR_OPTION
@DSN_OPTION
def migrate(print_ddl: bool, config_path: str | None, data_dir: str | None, dsn: str | None) -> None:
    """Create or upgrade the telemetry tables (versioned, idempotent; also run at start-up)."""
    from gateway.telemetry.clickhouse import ClickHouseStore, chdb_dir_in_use
    from gateway.telemetry.schema import ddl_script

    snapshot = load_cli_config(config_path)
    settings, store_dsn = store_settings(snapshot, dsn, data_dir)
    store = ClickHouseStore(settings, store_dsn)
    if print_ddl:
        click.echo(ddl_script(store.schema))
        return
    target = store.target
    if target.kind == "chdb" and chdb_dir_in_use(target.path):
        raise click.ClickException(f"the embedded store {target.path} is held by a running gateway, "
                                   "which migrates it at start-up")
    try:
        store.ensure()
    except Exception as exc:
        from gateway.telemetry.scrub import scrub_secrets
        raise click.ClickException(f"{target.display}: {scrub_secrets(str(exc))}") from None
    finally:
        store.close()
    if store.migrated:
        click.echo(f"{target.display} (database {target.database}): applied migration(s) "
                   f"{', '.join(map(str, store.migrated))}")
    else:
        click.echo(f"{target.display} (database {target.database}): schema is up to date")
