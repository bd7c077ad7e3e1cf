"""How a command reads telemetry: through the running gateway's ``POST /admin/query`` (the
gateway owns the embedded store's directory) or by opening the store itself, plus the
``--data-dir`` / ``--dsn`` options every such command takes. Shared by ``query``, ``db``,
``sessions`` and ``drift``.
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli.local_http import trust_env

DATA_DIR_OPTION = click.option("--data-dir", default=None, help="Embedded data folder (default: telemetry.data_dir, "
                               "$LLM_GATEWAY_DATA_DIR or ./.llm-gateway).")
DSN_OPTION = click.option("--dsn", default=None, help="Store to use instead of the config's (http(s)://… or chdb://DIR).")


def store_settings(snapshot, dsn: str | None, data_dir: str | None):
    """``(clickhouse settings, DSN)`` of the store a command reads: ``--dsn``, else the config's
    (the embedded store under ``--data-dir`` or ``telemetry.data_dir``)."""
    t = snapshot.config.telemetry
    ddir = t.resolved_data_dir(data_dir)
    return t.clickhouse, dsn or t.resolved_dsn(ddir)


def query_store(settings, dsn: str, sql: str, params: dict, fmt: str, limits=None) -> bytes:
    """Run ``sql`` against the store itself (``limits``: ``telemetry.queries``)."""
    from gateway.telemetry.clickhouse import ReadOnlyClient, chdb_dir_in_use, parse_dsn

    target = parse_dsn(dsn, settings.database)
    if target.kind == "chdb":
        need_embedded(click.ClickException)
        if not Path(target.path).is_dir():
            raise click.ClickException(f"no embedded store at {target.path} (nothing logged yet?)")
        if chdb_dir_in_use(target.path):
            raise click.ClickException(
                f"the embedded store {target.path} is held by a running process; query through it with "
                "--url http://HOST:PORT (its /admin/query endpoint)")
    client = ReadOnlyClient(settings, dsn, limits)
    try:
        return client.query(sql, fmt, params)
    except Exception as exc:
        from gateway.telemetry.scrub import scrub_secrets
        raise click.ClickException(scrub_secrets(str(exc))) from None
    finally:
        client.close()


def need_embedded(error: type[click.ClickException]) -> None:
    """Opening the embedded store needs chDB (the ``embedded`` extra): say so in one line."""
    from gateway.store.availability import embedded_available, not_queryable_message

    if not embedded_available():
        raise error(not_queryable_message())


def ask_gateway(method: str, url: str, path: str, key: str | None, timeout: float,
                error: type[click.ClickException] = click.ClickException, **request):
    """``method url+path`` with the admin key; the response, or ``None`` when nothing listens at
    ``url``. A transport failure raises ``error``; the caller judges the status."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        return httpx.request(method, url.rstrip("/") + path, headers=headers, timeout=timeout,
                             trust_env=trust_env(url), **request)
    except httpx.ConnectError:
        return None
    except httpx.HTTPError as exc:
        raise error(f"{url}: {type(exc).__name__}: {exc}") from None


def error_of(resp) -> tuple[str, str | None]:
    """``(message, code)`` of an error answer (OpenAI's shape, else its text)."""
    try:
        err = resp.json()["error"]
        return err["message"], err.get("code")
    except Exception:
        return resp.text[:2000], None


class UnknownModelExit(click.ClickException):
    """``--model`` names no model of the config and no row: exit status 4 (``drift``, ``bias``)."""

    exit_code = 4


def check_via_gateway(url: str, key: str | None, path: str, params: dict, timeout: float,
                      error: type[click.ClickException]) -> dict | None:
    """A dashboard check's answer (``GET url+path``: drift, bias); ``None`` when nothing listens
    at ``url``. An unknown model is ``UnknownModelExit``, any other refusal ``error``."""
    from gateway.dashboard.drift import UnknownModelError

    resp = ask_gateway("GET", url, path, key, timeout, error=error, params=params)
    if resp is None:
        return None
    if resp.status_code != 200:
        message, code = error_of(resp)
        if resp.status_code == 404 and code == UnknownModelError.code:
            raise UnknownModelExit(message)
        raise error(f"{url} answered HTTP {resp.status_code}: {message}")
    return resp.json()


def query_via_gateway(url: str, key: str | None, payload: dict, timeout: float) -> bytes | None:
    """POST to ``url/admin/query``; ``None`` when nothing listens there."""
    resp = ask_gateway("POST", url, "/admin/query", key, timeout, json=payload)
    if resp is None:
        return None
    if resp.status_code != 200:
        raise click.ClickException(f"{url} answered HTTP {resp.status_code}: {error_of(resp)[0]}")
    return resp.content


def run_on_store(settings, dsn: str, limits, error: type[click.ClickException], endpoint: str, run):
    """``run(fetch)`` over the store itself (a server DSN, or the embedded directory when no
    process holds it); ``endpoint``: the gateway path to suggest when one does. Exceptions of
    ``run`` other than ``click.ClickException`` become ``error`` (secrets scrubbed)."""
    from pathlib import Path

    from gateway.dashboard.sql import client_fetch
    from gateway.telemetry.clickhouse import ReadOnlyClient, chdb_dir_in_use, parse_dsn
    from gateway.telemetry.scrub import scrub_secrets

    target = parse_dsn(dsn, settings.database)
    if target.kind == "chdb":
        need_embedded(error)
        if not Path(target.path).is_dir():
            raise error(f"no embedded store at {target.path} (nothing logged yet?)")
        if chdb_dir_in_use(target.path):
            raise error(f"the embedded store {target.path} is held by a running process; check through it with "
                        f"--url http://HOST:PORT (its {endpoint} endpoint)")
    client = ReadOnlyClient(settings, dsn, limits)
    try:
        return run(client_fetch(client))
    except click.ClickException:
        raise
    except Exception as exc:
        raise error(scrub_secrets(str(exc))[:2000] or type(exc).__name__) from None
    finally:
        client.close()
