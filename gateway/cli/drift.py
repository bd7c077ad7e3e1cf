"""``llm-gateway drift``: the dashboard's drift checks from the command line, for cron and CI.

Prints a table (or ``--format json``) and exits with:

- **0**: the checks ran and nothing drifted;
- **1**: a check is at ``drift`` (or at ``warn`` too with ``--fail-on warn``);
- **2**: the checks could not run (store unreachable, bad options, access refused);
- **3**: insufficient data: every check is ``n/a`` (too few rows to compare), so nothing was
  checked — a cron job must not read that as "no drift";
- **4**: unknown model: ``--model`` is not a model of the config and no row of the windows
  names it (a typo, or a model that never served).

Where the checks run follows ``llm-gateway query``:

- with a server DSN (``http(s)://``), against the server directly;
- with the embedded store (chDB), through the running gateway's ``GET /admin/dashboard/drift``
  (``--url``, default: the address the gateway holding the data folder recorded, else
  ``http://<server.host>:<server.port>``; admin key from ``--admin-key``,
  ``$GATEWAY_ADMIN_KEY`` or the config), because the gateway owns the directory; when no
  gateway answers, by opening the directory itself (refused while another process holds it).
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from gateway.cli.local_http import gateway_url
from gateway.cli.store_client import (
    DATA_DIR_OPTION,
    DSN_OPTION,
    UnknownModelExit,
    check_via_gateway,
    run_on_store,
    store_settings,
)
from gateway.cli.support import config_option, load_cli_config
from gateway.dashboard.drift import DriftOptions, UnknownModelError, render_table, run_drift
from gateway.dashboard.filters import FilterError, Filters, parse_prompt

EXIT_DRIFT, EXIT_INSUFFICIENT = 1, 3


class DriftCheckError(click.ClickException):
    """The checks could not run: exit status 2 (1 means drift)."""

    exit_code = 2


def _direct(settings, dsn: str, filters: Filters, opts: DriftOptions, models, limits=None) -> dict:
    def run(fetch) -> dict:
        try:
            return run_drift(fetch, filters, opts, models=models)
        except UnknownModelError as exc:
            raise UnknownModelExit(str(exc)) from None

    return run_on_store(settings, dsn, limits, DriftCheckError, "/admin/dashboard/drift", run)


@click.command()
@click.option("--model", default="", help="Public model name (model_requested) to check.")
@click.option("--prompt", default="", help="Prompt name, or name@version, to check.")
@click.option("--tenant", default="", help="Only this tenant's requests.")
@click.option("--backend", default="", help="Only requests answered by this backend.")
@click.option("--current-hours", type=click.FloatRange(0.25, 720), default=24.0, show_default=True,
              help="The recent window.")
@click.option("--reference-hours", type=click.FloatRange(1, 2160), default=168.0, show_default=True,
              help="The reference window, just before the recent one.")
@click.option("--bins", type=click.IntRange(2, 20), default=10, show_default=True,
              help="Quantile bins of the reference window for PSI.")
@click.option("--min-samples", type=click.IntRange(min=1), default=200, show_default=True,
              help="Rows each window needs before a check counts.")
@click.option("--fail-on", type=click.Choice(["drift", "warn"]), default="drift", show_default=True,
              help="Exit 1 at this level or above.")
@click.option("--include-eval-runs", is_flag=True, help="Count the calls of `eval run` too (left out by default).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--url", default=None, help="Gateway base URL to check through (embedded store).")
@click.option("--admin-key", envvar="GATEWAY_ADMIN_KEY", default=None, help="Admin key ($GATEWAY_ADMIN_KEY).")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for the answer.")
@config_option
@DATA_DIR_OPTION
@DSN_OPTION
def drift(model: str, prompt: str, tenant: str, backend: str, current_hours: float, reference_hours: float,
          bins: int, min_samples: int, fail_on: str, include_eval_runs: bool, fmt: str, url: str | None,
          admin_key: str | None,
          timeout: float, config_path: str | None, data_dir: str | None, dsn: str | None) -> None:
    """Compare the last 24 h with the 7 days before (PSI of prompt/completion tokens and latency,
    finish-reason mix, error rate, feedback score).

    Exit status: 0 no drift, 1 drift flagged, 2 the checks could not run, 3 insufficient data
    (every check n/a), 4 unknown model."""
    try:
        prompt_name, version = parse_prompt(prompt.strip())
    except FilterError as exc:
        raise click.UsageError(str(exc)) from None
    opts = DriftOptions(current_h=current_hours, reference_h=reference_hours, bins=bins, min_samples=min_samples,
                        eval_runs=include_eval_runs)
    filters = Filters(from_ms=0, to_ms=1, tenant=tenant, model=model, backend=backend, prompt=prompt_name,
                      version=version)
    snapshot = load_cli_config(config_path)
    settings, store_dsn = store_settings(snapshot, dsn, data_dir)
    result = None
    target_url = url or gateway_url(snapshot, data_dir)  # None: --data-dir names a folder no gateway holds
    if target_url and (url or (dsn is None and store_dsn.startswith("chdb://"))):
        server = snapshot.config.server
        params: dict[str, Any] = {k: v for k, v in (("model", model), ("prompt", prompt.strip()), ("tenant", tenant),
                                    ("backend", backend)) if v}
        params.update({"current_h": current_hours, "reference_h": reference_hours, "bins": bins,
                       "min_samples": min_samples, "eval_runs": "1" if include_eval_runs else ""})
        result = check_via_gateway(target_url, admin_key or server.admin_key, "/admin/dashboard/drift", params, timeout,
                                   DriftCheckError)
        if result is None and url:
            raise DriftCheckError(f"no gateway answers at {url}")
    if result is None:
        result = _direct(settings, store_dsn, filters, opts, set(snapshot.config.models),
                         snapshot.config.telemetry.queries)
    if fmt == "json":
        sys.stdout.buffer.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        click.echo(render_table(result), nl=False)
    failing = {"drift"} if fail_on == "drift" else {"drift", "warn"}
    if any(c["level"] in failing for c in result["checks"]):
        sys.exit(EXIT_DRIFT)
    if result.get("insufficient_data"):
        sys.exit(EXIT_INSUFFICIENT)
