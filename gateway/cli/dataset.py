"""``llm-gateway dataset export``: logged traffic →
OpenAI chat fine-tuning JSONL. Rows come through a running gateway's ``/admin/query`` (the
embedded store) or straight from the store, like ``llm-gateway query``."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

import click

from gateway.cli.sessions import RowSource, _source_options
from gateway.cli.support import load_cli_config
from gateway.datasets.export import Exporter, ExportOptions

BODIES_OFF = ("request/response bodies are not in the rows: body logging was off. Turn it on "
              "(telemetry.bodies: {request: true, response: true}) and export traffic logged after that.")


def _redactor(spec: str | None, snapshot, enabled: bool):
    """The redaction hook: ``--redact`` (``pii`` or ``module:function``), else the config's
    ``telemetry.bodies.redact``; ``None`` with ``--no-redact``."""
    if not enabled:
        return None
    from gateway.telemetry.values import load_hook

    spec = spec or snapshot.config.telemetry.bodies.redact
    if not spec:
        return None
    if spec == "pii":
        spec = "plugins.pii:redact_for_log"
    try:
        return load_hook(spec)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--redact") from None


@click.command("export")
@click.option("--model", default="", help="Only requests to this public model.")
@click.option("--prompt", default="", help="Only requests that used this prompt (NAME or NAME@VERSION).")
@click.option("--since", default=None, help="From this UTC time (e.g. 2025-06-01 or '2025-06-01 12:00').")
@click.option("--until", default=None, help="Before this UTC time.")
@click.option("--min-feedback", type=float, default=None, help="Keep rows whose mean feedback score is at least this.")
@click.option("--status", type=click.Choice(["ok", "any"]), default="ok", show_default=True,
              help="ok: HTTP 200 answers only.")
@click.option("--dedupe", is_flag=True, help="Drop examples identical to an earlier one.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Stop after this many examples.")
@click.option("--format", "fmt", type=click.Choice(["openai-chat", "jsonl"]), default="openai-chat",
              show_default=True, help="openai-chat: the fine-tuning format; jsonl: with provenance fields.")
@click.option("--output", "-o", default="-", show_default=True, help="Training file (- for stdout).")
@click.option("--split", type=click.FloatRange(0, 0.9), default=0.0, show_default=True,
              help="Share of examples held out for validation.")
@click.option("--validation-output", default=None, help="Validation file (default: <output>.val.jsonl).")
@click.option("--seed", default="", help="Changes which examples the split holds out.")
@click.option("--redact", "redact_spec", default=None,
              help="Redaction hook: 'pii' or module:function (default: telemetry.bodies.redact).")
@click.option("--no-redact", is_flag=True, help="Export the logged text as it is.")
@click.option("--page-size", type=click.IntRange(min=1, max=100_000), default=500, show_default=True)
@_source_options
def export(model: str, prompt: str, since: str | None, until: str | None, min_feedback: float | None, status: str,
           dedupe: bool, limit: int | None, fmt: str, output: str, split: float, validation_output: str | None,
           seed: str, redact_spec: str | None, no_redact: bool, page_size: int, url: str | None,
           admin_key: str | None, timeout: float, config_path: str | None, data_dir: str | None,
           dsn: str | None) -> None:
    """Write logged chat requests and their answers as OpenAI fine-tuning JSONL."""
    snapshot = load_cli_config(config_path)
    bodies = snapshot.config.telemetry.bodies
    if not (bodies.request and bodies.response):
        click.echo("warning: this config does not log request/response bodies (telemetry.bodies); only rows "
                   "logged while it was on can be exported", err=True)
    name, _, version = prompt.partition("@")
    if version and not version.isdigit():
        raise click.BadParameter("use NAME or NAME@VERSION (a number)", param_hint="--prompt")
    if split > 0 and output == "-" and not validation_output:
        raise click.UsageError("--split needs --output FILE or --validation-output FILE")
    options = ExportOptions(model=model, prompt=name, prompt_version=int(version) if version else None,
                            since=since, until=until, min_feedback=min_feedback, status=status, dedupe=dedupe,
                            limit=limit, fmt=fmt, split=split, seed=seed, page_size=page_size,
                            redact=_redactor(redact_spec, snapshot, not no_redact))
    source = RowSource(snapshot, url=url, admin_key=admin_key, dsn=dsn, data_dir=data_dir, timeout=timeout)
    with ExitStack() as stack:
        train = sys.stdout.buffer if output == "-" else stack.enter_context(open(output, "wb"))
        validation = None
        if split > 0:
            path = validation_output or str(Path(output).with_suffix("")) + ".val.jsonl"
            validation = stack.enter_context(open(path, "wb"))
        report = Exporter(options).run(source.rows, train, validation)
    click.echo(report.summary(), err=True)
    if report.bodies_missing:
        click.echo(BODIES_OFF, err=True)
        sys.exit(1)


@click.group("dataset")
def dataset() -> None:
    """Fine-tuning datasets from the logged traffic."""


dataset.add_command(export)
