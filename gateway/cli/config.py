"""``llm-gateway config …``: the config format itself, for editors and readers.

``schema`` prints the JSON Schema (point yaml-language-server at it to validate and complete
``gateway.yaml`` while typing); ``reference`` prints the Markdown reference of every key.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group("config")
def config() -> None:
    """The config format: its JSON Schema and its generated reference."""


def _emit(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@config.command("schema")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write to FILE instead of stdout.")
def schema_cmd(output: str | None) -> None:
    """Print the JSON Schema of gateway.yaml (for editors: `# yaml-language-server: $schema=FILE`)."""
    from gateway.config.reference import json_schema_text

    _emit(json_schema_text(), output)


@config.command("reference")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="Write to FILE instead of stdout.")
def reference_cmd(output: str | None) -> None:
    """Print the Markdown reference of every config key (type, default, meaning)."""
    from gateway.config.reference import markdown

    _emit(markdown(), output)
