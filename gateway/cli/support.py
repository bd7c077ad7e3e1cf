"""What every command shares: the ``--config`` option, loading the config it resolves to,
and the lines a command writes for an operator (stderr).

``say`` and ``fail`` write plain text, or one JSON log record a line once logging is in JSON
(``--log-format json`` or ``observability.logging.format: json`` for ``serve``), so a log
shipper reading the gateway's stderr never meets a line it cannot parse.
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import click

log = logging.getLogger("gateway.cli")

CONFIG_HELP = ("Config file (default: $LLM_GATEWAY_CONFIG, else ./gateway.yaml, else ./config/gateway.yaml, "
               "else embedded defaults).")


def config_option(fn=None, *, required: bool = False):
    """``--config PATH`` with the one resolution order (``gateway.config.resolve``)."""
    option = click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                          required=required, help=CONFIG_HELP)
    return option(fn) if fn is not None else option


def _json_logging() -> bool:
    from gateway.observability.logs import JsonFormatter

    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def say(message: str, level: int = logging.INFO) -> None:
    """One line for the operator on stderr (a JSON record when logs are JSON)."""
    if _json_logging():
        log.log(level, message)
    else:
        click.echo(message, err=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Say why the command cannot go on (an error record when logs are JSON) and exit."""
    say(message, logging.ERROR)
    sys.exit(code)


def load_cli_compiled(config_path: str | None, *, announce: bool = True):
    """The config ``--config`` resolves to (``gateway.config.resolve``), compiled as the gateway
    would compile it (``gateway.compiled``: prompts, chains, plugin paths). Says which file on
    stderr (``config: PATH (why)``) unless ``announce`` is false; an invalid config exits 2
    with its path-qualified problems."""
    from gateway.compiled import compile_config
    from gateway.config import ConfigError
    from gateway.config.resolve import load_resolved, resolve_config

    resolved = resolve_config(config_path)
    if announce:
        say(f"config: {resolved.describe()}")
    try:
        return compile_config(load_resolved(resolved))
    except ConfigError as exc:
        fail(str(exc))


def load_cli_config(config_path: str | None, *, announce: bool = True):
    """The snapshot of ``load_cli_compiled`` (checked the same way: a config the gateway would
    refuse exits 2)."""
    return load_cli_compiled(config_path, announce=announce).snapshot
