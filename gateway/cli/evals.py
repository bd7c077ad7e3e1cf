"""``llm-gateway eval``: evaluations (``gateway.evals``; docs/llmops.md, "Evaluations").

``eval run`` starts the gateway of the config in-process on a loopback port and runs the
dataset against the candidates through it; ``eval compare`` reads runs back from the store
(through a running gateway's ``/admin/query``, or the store directly) and reports them.
Exit status: 0, 2 for a usage or config error or a run in which no call succeeded, 3 when a
gate fails.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import click
import orjson

from gateway.cli.sessions import RowSource, _source_options
from gateway.cli.store_client import DATA_DIR_OPTION
from gateway.cli.support import config_option, fail, load_cli_compiled, say
from gateway.config import environment

GATE_FAILED = 3


@click.group("eval")
def evals() -> None:
    """Evaluations: score candidates on a dataset, compare runs, gate promotions."""


def _write_report(report: dict[str, Any], as_json: bool, output: str | None) -> None:
    from gateway.evals.report import render_text

    data = orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n"
    if output:
        with open(output, "wb") as f:
            f.write(data)
    if as_json:
        sys.stdout.buffer.write(data)
    else:
        click.echo(render_text(report), nl=False)


@evals.command("run")
@click.option("--dataset", "dataset_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSONL items: OpenAI chat/fine-tuning lines, `dataset export` output, or {input, expected}.")
@click.option("--sql", default=None, help="Items from this read-only query over the telemetry instead "
              "(rows with messages, input or request_body/response_body).")
@click.option("--candidate", "-c", "candidates", multiple=True, required=True,
              help="A public model, PROMPT@VERSION, PROMPT@LABEL, PROMPT@SELECTOR/MODEL or ADAPTER@VERSION "
                   "(repeat).")
@click.option("--scorer", "-s", "scorers", multiple=True,
              help="exact, normalized, contains[=TEXT], regex[=PATTERN], json[=SCHEMA.json], numeric[=TOL], "
                   "embedding[=MODEL], judge[=MODEL], or module:function (repeat; default exact).")
@click.option("--prompt-model", default=None, help="The public model prompt-version candidates are rendered into.")
@click.option("--judge-model", default=None, help="Judge model (default: evaluations.judge_model).")
@click.option("--judge-prompt", default=None, help="The judge's rubric prompt (default: evaluations.judge_prompt).")
@click.option("--embedding-model", default=None, help="Embeddings model (default: evaluations.embedding_model).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=None,
              help="Calls in flight at once (default: evaluations.concurrency).")
@click.option("--cache/--no-cache", default=False, show_default=True, help="Let the response cache answer.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N items.")
@click.option("--gate", "gates", multiple=True, help="e.g. 'judge>=0.8': exit 3 when a candidate fails it (repeat).")
@click.option("--run-id", default=None, help="The run's id (default: UTC time and a random suffix).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--output", "-o", default=None, help="Also write the JSON report to this file.")
@click.option("--api-key", envvar=environment.API_KEY, default=None, help="Bearer key ($LLM_GATEWAY_API_KEY).")
@config_option
@DATA_DIR_OPTION
def run(dataset_path: str | None, sql: str | None, candidates: tuple[str, ...], scorers: tuple[str, ...],
        prompt_model: str | None, judge_model: str | None, judge_prompt: str | None, embedding_model: str | None,
        concurrency: int | None, cache: bool, limit: int | None, gates: tuple[str, ...], run_id: str | None,
        as_json: bool, output: str | None, api_key: str | None, config_path: str | None,
        data_dir: str | None) -> None:
    """Run a dataset against candidates through the gateway in-process, score, record and report."""
    from gateway.evals.calls import GatewayCaller, Progress
    from gateway.evals.candidates import CandidateError, check_scorer_models, resolve_candidates
    from gateway.evals.dataset import DatasetError, from_objects, read_jsonl
    from gateway.evals.gates import check_gate_names, parse_gate
    from gateway.evals.scorers import ScorerError, build_scorers

    if (dataset_path is None) == (sql is None):
        fail("give either --dataset FILE or --sql QUERY")
    compiled = load_cli_compiled(config_path)
    snapshot = compiled.snapshot
    _refuse_without_a_key(snapshot.config, api_key)
    ev = snapshot.config.evaluations
    run_id = run_id or f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
    try:
        parsed_gates = [parse_gate(gate) for gate in gates]
        chosen = resolve_candidates(compiled, list(candidates), prompt_model)
        caller = GatewayCaller(run_id, judge_model or ev.judge_model, judge_prompt or ev.judge_prompt,
                               embedding_model or ev.embedding_model, cache=cache, api_key=api_key)
        built = build_scorers(list(scorers), caller)
        check_scorer_models(compiled, built)
        check_gate_names(parsed_gates, [s.name for s in built])
        if output:
            _check_writable(output)
        dataset = read_jsonl(dataset_path, limit) if dataset_path else None
    except (CandidateError, ScorerError, DatasetError, ValueError) as exc:
        fail(str(exc))
    from gateway.app import build_app
    from gateway.evals.adapters import AdapterLoadError, TemporaryAdapters, with_adapter_models
    from gateway.evals.runner import EvalError, InProcessGateway, RunPlan, execute
    from gateway.proxy.server import BackgroundServer

    admin_key = snapshot.config.server.admin_key
    _refuse_a_held_store(snapshot, data_dir)
    adapters = [c.adapter for c in chosen if c.adapter is not None]
    snapshot = with_adapter_models(snapshot, adapters)  # the candidates' temporary adapters, as models
    # The vLLM servers are production's: this gateway only sends requests to them, never starts
    # a `launch:` server nor loads or unloads the config's adapters on them (only the candidates'
    # temporary adapters, loaded and unloaded by TemporaryAdapters around it).
    app = build_app(snapshot, data_dir=data_dir, launch_servers=False, manage_adapters=False)
    try:
        with _terminate_as_interrupt(), TemporaryAdapters(snapshot.config, adapters, warn=say), \
                BackgroundServer(app) as srv:
            reader = RowSource(snapshot, url=srv.url, admin_key=admin_key)
            try:
                gateway = InProcessGateway(srv, reader, admin_key)
                if dataset is None:
                    assert sql is not None
                    dataset = from_objects(f"sql: {' '.join(sql.split())[:200]}", reader.rows(sql, {})[:limit])
            except (EvalError, DatasetError) as exc:
                fail(str(exc))
            workers = concurrency or ev.concurrency
            config = {"candidates": {c.name: c.given for c in chosen}, "concurrency": workers,
                      "cache": cache, "judge_model": caller.judge_model if "judge" in [s.name for s in built] else None,
                      "judge_prompt": caller.judge_prompt if "judge" in [s.name for s in built] else None,
                      "embedding_model": caller.embedding_model if "embedding" in [s.name for s in built] else None,
                      "prompt_model": prompt_model, "limit": limit}
            if adapters:  # what each adapter candidate's version was when it was evaluated
                config["adapters"] = {f"{a.name}@{a.version}": a.path for a in adapters}
            plan = RunPlan(run_id, dataset, chosen, built, caller, workers, config)
            say(f"eval {run_id}: {len(dataset.items)} items x {len(chosen)} candidates, scorers "
                f"{', '.join(s.name for s in built)}")
            try:
                outcomes = execute(plan, gateway, Progress(f"eval {run_id}", len(dataset.items) * len(chosen)))
            except EvalError as exc:
                fail(str(exc))
            failed = [o.answer.error for o in outcomes if o.answer.status != 200]
            if failed:
                say(f"eval {run_id}: {len(failed)} of {len(outcomes)} calls failed; the first: {failed[0]}")
            report, failures = _report_and_gates(reader, run_id, [c.name for c in chosen], list(gates))
    except AdapterLoadError as exc:
        fail(str(exc))
    _write_report(report, as_json, output)
    for line in failures:
        say(f"gate failed: {line}")
    if failures:
        sys.exit(GATE_FAILED)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``timeout``, a CI cancel, Kubernetes) ends the run as Ctrl-C does: recorded
    ``failed``, and the candidates' temporary adapters unloaded from production's servers."""
    def interrupt(_signum, _frame):
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (an embedder): its own handling stands
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_writable(path: str) -> None:
    """Refuse (``ValueError``) an ``--output`` that could not be written once the run is over."""
    import os

    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK) \
            or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ValueError(f"--output {path}: cannot write there (no such folder, a folder, or not writable)")


def _refuse_without_a_key(config, api_key: str | None) -> None:
    """A gateway with keys answers every keyless call 401: refuse (exit 2) before any call."""
    from gateway.config.access import auth_mode

    if auth_mode(config) == "keys" and not api_key:
        fail("the gateway of this config requires an API key (auth.mode is keys): give eval run --api-key KEY "
             f"or ${environment.API_KEY}")


def _refuse_a_held_store(snapshot, data_dir: str | None) -> None:
    """The in-process gateway opens the embedded store itself: refuse (exit 2) in one line when a
    running gateway holds it, rather than wait for an ingester that cannot open it."""
    from gateway.cli.preflight import holder_url
    from gateway.telemetry import telemetry_enabled

    t = snapshot.config.telemetry
    ddir = t.resolved_data_dir(data_dir)
    url = holder_url(ddir) if telemetry_enabled(snapshot) and t.resolved_dsn(ddir).startswith("chdb://") else None
    if url:
        fail(f"the gateway at {url} holds the data directory {ddir} and its embedded store; eval run serves the "
             "config in-process on that store: stop that gateway, or give eval run another --data-dir")


def _report_and_gates(reader, run_id: str, candidates: list[str],
                      gates: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The run's report (with a ``gates`` section) and one line per failing gate; each gate
    applies to every candidate. (``evaluations.gates`` are for promotions, not checked here.)"""
    from gateway.evals.gates import check_gates, gate_values, parse_gate
    from gateway.evals.report import build_report, load_run

    report = build_report([load_run(reader, run_id)])
    results, failures = [], []
    for candidate in candidates if gates else ():
        values = gate_values(reader, run_id, candidate)
        for gate in gates:
            failed = check_gates(values, [parse_gate(gate)], f"run {run_id} ({candidate})")
            results.append({"candidate": candidate, "gate": gate, "passed": not failed,
                            "message": failed[0] if failed else ""})
            failures.extend(failed)
    report["gates"] = results
    return report, failures


@evals.command("compare")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--output", "-o", default=None, help="Also write the JSON report to this file.")
@_source_options
def compare(run_ids: tuple[str, ...], as_json: bool, output: str | None, url: str | None, admin_key: str | None,
            timeout: float, config_path: str | None, data_dir: str | None, dsn: str | None) -> None:
    """Compare evaluation runs (RUN_A RUN_B …; one run: its report) item by item."""
    from gateway.evals.report import ReportError, build_report, load_run

    if len(run_ids) > 8:
        fail("compare at most 8 runs")
    from gateway.cli.support import load_cli_config

    source = RowSource(load_cli_config(config_path, announce=False), url=url, admin_key=admin_key, dsn=dsn,
                       data_dir=data_dir, timeout=timeout)
    try:
        report = build_report([load_run(source, r) for r in run_ids])
    except ReportError as exc:
        fail(str(exc))
    _write_report(report, as_json, output)
