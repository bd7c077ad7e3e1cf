"""A click group whose subcommands are imported only when one of them runs.

The command modules pull in the server, the telemetry store, tokenizers and SDKs; importing
them all made ``llm-gateway --help`` (and any one command) pay for every other. The group
lists each lazy command with a one-line summary kept here, so ``--help`` imports none of
them (a test checks the summaries against the commands' own help).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import click


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """``target``: ``module:attribute`` of the click command; ``summary``: the start of its
    short help (shown in ``--help`` in its place)."""

    target: str
    summary: str

    def load(self) -> click.Command:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


class LazyGroup(click.Group):
    """``click.Group`` plus ``lazy``: name → ``LazyCommand``, imported on first use."""

    def __init__(self, *args, lazy: dict[str, LazyCommand] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            self.add_command(self.lazy[name].load(), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            if name in self.commands:
                cmd = self.commands[name]
                if cmd.hidden:
                    continue
                rows.append((name, cmd.get_short_help_str(limit)))
            else:
                # shortened as click shortens a command's own help (its public API, stable across versions)
                rows.append((name, click.Command(name, help=self.lazy[name].summary).get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)
