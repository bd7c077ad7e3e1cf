"""``llm-gateway adapters …``: list LoRA adapters, promote a version, roll back (docs/vllm.md,
"Adapters: canary and promote"). Promotion edits ``adapters:`` in the gateway config in place
(``gateway.cli.promote``)."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli.promote import (
    PromoteError,
    check_adapter_promotion,
    checked_config,
    gates_or_exit,
    promote_adapter,
    promote_options,
    report,
    rollback_adapter,
)
from gateway.cli.support import config_option, fail


@click.group("adapters")
def adapters() -> None:
    """LoRA adapters served by vLLM: list, promote, roll back."""


@adapters.command("list")
@config_option
def list_cmd(config_path: str | None) -> None:
    """Each adapter: its base model, the version served, the versions it has, the ones before."""
    compiled, _ = checked_config(config_path)
    for name, a in sorted(compiled.snapshot.config.adapters.items()):
        previous = ", ".join(map(str, a.previous)) or "-"
        click.echo(f"{name}  base {a.base_model}  version {a.version} ({a.path})  "
                   f"versions {', '.join(map(str, sorted(a.versions)))}  previous {previous}")


@adapters.command("promote")
@click.argument("name")
@click.argument("version", type=int)
@config_option
@promote_options
def promote_cmd(name: str, version: int, config_path: str | None, force: bool, url: str | None,
                admin_key: str | None, data_dir: str | None, dsn: str | None) -> None:
    """Serve VERSION of adapter NAME (its evaluation gates must pass): edits the config in place."""
    compiled, check = checked_config(config_path)
    if name not in compiled.snapshot.config.adapters:
        fail(f"{compiled.snapshot.source}: no adapter {name!r} under adapters:")
    path = Path(compiled.snapshot.source)
    try:
        check_adapter_promotion(path, name, version)  # a wrong version is said before any gate
        gates_or_exit(compiled, name, version, force, {"url": url, "admin_key": admin_key, "dsn": dsn,
                                                        "data_dir": data_dir})
        report(promote_adapter(path, name, version, check))
    except PromoteError as exc:
        fail(str(exc), code=1)


@adapters.command("rollback")
@click.argument("name")
@config_option
def rollback_cmd(name: str, config_path: str | None) -> None:
    """Serve the version adapter NAME served before the last promotion (no gates: it was served)."""
    compiled, check = checked_config(config_path)
    try:
        report(rollback_adapter(Path(compiled.snapshot.source), name, check))
    except PromoteError as exc:
        fail(str(exc), code=1)
