"""``llm-gateway bias``: disparities across segments of the traffic, or across raters, for cron
and CI. Exit statuses as ``llm-gateway drift``:

- **0**: the checks ran and found no disparity;
- **1**: a check is at ``disparity``;
- **2**: the checks could not run (store unreachable, bad options, access refused);
- **3**: insufficient data: no check had two segments above the minimum count, so nothing was
  compared — not the same as "no disparity";
- **4**: unknown model: ``--model`` is not a model of the config and no row of the window names it.

Where it runs follows ``drift``: against a server DSN directly; with the embedded store through
the running gateway's ``GET /admin/dashboard/bias``, else by opening the directory itself.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from gateway.bias.analysis import BiasOptions, check_refusal_pattern, parse_by, run_bias, window
from gateway.bias.render import render_table
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
from gateway.dashboard.drift import UnknownModelError
from gateway.dashboard.filters import FilterError

EXIT_DISPARITY, EXIT_INSUFFICIENT = 1, 3
PATH = "/admin/dashboard/bias"


class BiasCheckError(click.ClickException):
    """The checks could not run: exit status 2 (1 means a disparity)."""

    exit_code = 2


@click.command()
@click.option("--by", "by", default=None,
              help="Segment: metadata.<key>, tenant, user, api_key_id, user_agent, experiment_arm, model, backend "
                   "(default tenant; with --raters: none).")
@click.option("--raters", is_flag=True, help="Rater bias: compare the scores of each feedback rater.")
@click.option("--model", default="", help="Public model name (model_requested).")
@click.option("--prompt", default="", help="Prompt name, or name@version.")
@click.option("--tenant", default="", help="Only this tenant's requests.")
@click.option("--backend", default="", help="Only requests answered by this backend.")
@click.option("--hours", type=click.FloatRange(0.25, 2160), default=168.0, show_default=True,
              help="The window, ending now.")
@click.option("--min-count", type=click.IntRange(min=2), default=30, show_default=True,
              help="Requests a segment needs to be judged.")
@click.option("--min-feedback", type=click.IntRange(min=2), default=20, show_default=True,
              help="Scores a segment (or rater) needs for the feedback checks.")
@click.option("--alpha", type=click.FloatRange(1e-9, 0.5), default=0.05, show_default=True,
              help="Significance level, after the Holm–Bonferroni correction.")
@click.option("--refusal-pattern", default=None,
              help="RE2 regex over the logged response body that marks a refusal (default bias.refusal_pattern "
                   "of the config, if any).")
@click.option("--include-eval-runs", is_flag=True, help="Count the calls of `eval run` too (left out by default).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--url", default=None, help="Gateway base URL to check through (embedded store).")
@click.option("--admin-key", envvar="GATEWAY_ADMIN_KEY", default=None, help="Admin key ($GATEWAY_ADMIN_KEY).")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds to wait for the answer.")
@config_option
@DATA_DIR_OPTION
@DSN_OPTION
def bias(by: str | None, raters: bool, model: str, prompt: str, tenant: str, backend: str, hours: float,
         min_count: int, min_feedback: int, alpha: float, refusal_pattern: str | None, include_eval_runs: bool,
         as_json: bool,
         url: str | None, admin_key: str | None, timeout: float, config_path: str | None, data_dir: str | None,
         dsn: str | None) -> None:
    """Disparities across segments of the traffic, or across raters: refusal rate, error rate,
    feedback score, output tokens and latency per segment, each tested for a disparity across
    segments (chi-square / Welch, Holm-corrected; Cramér's V / Hedges' g); --raters: the same
    over feedback per rater.

    Exit status: 0 no disparity, 1 disparity, 2 the checks could not run, 3 insufficient data,
    4 unknown model."""
    snapshot = load_cli_config(config_path)
    if refusal_pattern is None:
        refusal_pattern = snapshot.config.bias.refusal_pattern or ""
    by = by or ("none" if raters else "tenant")
    try:
        parse_by(by, allow_none=raters)
        check_refusal_pattern(refusal_pattern)
        f = window(hours, model=model, prompt=prompt.strip(), tenant=tenant, backend=backend)
    except FilterError as exc:
        raise click.UsageError(str(exc)) from None
    opts = BiasOptions(by=by, raters=raters, hours=hours, min_count=min_count, min_feedback=min_feedback,
                       alpha=alpha, refusal_pattern=refusal_pattern, eval_runs=include_eval_runs)
    settings, store_dsn = store_settings(snapshot, dsn, data_dir)
    result = None
    target_url = url or gateway_url(snapshot, data_dir)  # None: --data-dir names a folder no gateway holds
    if target_url and (url or (dsn is None and store_dsn.startswith("chdb://"))):
        params: dict[str, Any] = {k: v for k, v in (("model", model), ("prompt", prompt.strip()), ("tenant", tenant),
                                                    ("backend", backend), ("refusal_pattern", refusal_pattern)) if v}
        params.update({"by": by, "from": f.from_ms, "to": f.to_ms, "min_count": min_count,
                       "min_feedback": min_feedback, "alpha": alpha, "raters": "1" if raters else "",
                       "eval_runs": "1" if include_eval_runs else ""})
        result = check_via_gateway(target_url, admin_key or snapshot.config.server.admin_key, PATH, params, timeout,
                                   BiasCheckError)
        if result is None and url:
            raise BiasCheckError(f"no gateway answers at {url}")
    if result is None:
        from gateway.bias.stats import run_tests

        def run(fetch) -> dict:
            try:
                return run_bias(fetch, f, opts, run_tests, set(snapshot.config.models))
            except UnknownModelError as exc:
                raise UnknownModelExit(str(exc)) from None

        result = run_on_store(settings, store_dsn, snapshot.config.telemetry.queries, BiasCheckError, PATH, run)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        click.echo(render_table(result), nl=False)
    if result["flagged"]:
        sys.exit(EXIT_DISPARITY)
    if result["insufficient_data"]:
        sys.exit(EXIT_INSUFFICIENT)
