"""Promote and roll back: a prompt label (``prompts/<name>.yaml``) or an adapter's served version
(``adapters:`` in the gateway config), edited in place so that comments and order stay; the
running gateway hot-reloads the file.

The version a promotion replaces is remembered in the same file, so ``rollback`` needs nothing
else: a prompt file's ``previous: {<label>: [<older>, ...]}``, an adapter's ``previous: [...]``
(oldest first; rollback goes back to the last and drops it). Before a promotion the
evaluation gates of the candidate (``evaluations.gates`` under ``NAME@VERSION`` or ``NAME``)
must pass on its newest finished evaluation run (``gateway.evals.gates``); ``force`` skips them.
After the edit the whole config is loaded as the gateway would: a result it would refuse is
put back as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.cli.yaml_edit import EditError, edit, load
from gateway.cli.yaml_edit import plain as _plain


class PromoteError(Exception):
    """Refused, with why (the file is unchanged)."""


@dataclass(frozen=True)
class Change:
    """What a promotion or rollback did, for the command's output."""

    file: Path
    what: str
    before: Any
    after: Any


def gate_failures(gates: dict[str, list[str]], name: str, version: int,
                  reader_of: Callable[[], Any]) -> list[str]:
    """The failing gates of ``NAME@VERSION`` and ``NAME`` (those configured); ``reader_of`` is
    called only when there are gates to check."""
    keys = [k for k in (f"{name}@{version}", name) if gates.get(k)]
    if not keys:
        return []
    from gateway.evals.gates import failing_gates

    reader = reader_of()
    return [f for k in keys for f in failing_gates(reader, k, gates[k])]


def _apply(path: Path, changes: list[tuple[list[Any], Any, Any]], check: Callable[[], None]) -> None:
    """Edit ``path``; put it back when ``check()`` (loading the config) raises."""
    original = path.read_bytes()
    try:
        edit(path, changes)
    except EditError as exc:
        raise PromoteError(f"{path}: {exc}") from None
    try:
        check()
    except Exception as exc:
        path.write_bytes(original)
        raise PromoteError(f"{path}: the edited config is invalid; left as it was:\n{exc}") from None


def promote_prompt(path: Path, label: str, version: int, check: Callable[[], None]) -> Change:
    doc = load(path.read_text(encoding="utf-8"))
    versions = {v.get("version") for v in doc.get("versions") or []}
    if version not in versions:
        raise PromoteError(f"{path}: no version {version} (has {', '.join(map(str, sorted(versions)))})")
    labels = doc.get("labels") or {}
    before = labels.get(label)
    if before == version:
        raise PromoteError(f"{path}: label {label!r} is already version {version}")
    changes: list[tuple[list[Any], Any, Any]] = [
        (["labels"], label, version) if "labels" in doc else ([], "labels", {label: version})]
    if before is not None:
        older = [*_plain(doc.get("previous") or {}).get(label, []), _plain(before)]
        changes.append((["previous"], label, older) if "previous" in doc else ([], "previous", {label: older}))
    _apply(path, changes, check)
    return Change(path, f"label {label}", _plain(before), version)


def rollback_prompt(path: Path, label: str, check: Callable[[], None]) -> Change:
    doc = load(path.read_text(encoding="utf-8"))
    older = list((doc.get("previous") or {}).get(label) or [])
    if not older:
        raise PromoteError(f"{path}: nothing to roll back to: no previous version of label {label!r}")
    before = _plain((doc.get("labels") or {}).get(label))
    target = _plain(older[-1])
    _apply(path, [(["labels"], label, target), (["previous"], label, _plain(older[:-1]))], check)
    return Change(path, f"label {label}", before, target)


def promote_adapter(path: Path, name: str, version: int, check: Callable[[], None]) -> Change:
    adapter = _adapter(path, name)
    versions = set(adapter.get("versions") or {})
    if version not in versions:
        raise PromoteError(f"{path}: adapter {name!r} has no version {version} "
                           f"(has {', '.join(map(str, sorted(versions)))}; add its path under versions first)")
    before = adapter.get("version")
    if before == version:
        raise PromoteError(f"{path}: adapter {name!r} already serves version {version}")
    older = [*_plain(list(adapter.get("previous") or [])), before]
    _apply(path, [(["adapters", name], "version", version), (["adapters", name], "previous", older)], check)
    return Change(path, f"adapter {name}", before, version)


def rollback_adapter(path: Path, name: str, check: Callable[[], None]) -> Change:
    adapter = _adapter(path, name)
    older = _plain(list(adapter.get("previous") or []))
    if not older:
        raise PromoteError(f"{path}: nothing to roll back to: adapter {name!r} has no previous version")
    before = adapter.get("version")
    _apply(path, [(["adapters", name], "version", older[-1]), (["adapters", name], "previous", older[:-1])], check)
    return Change(path, f"adapter {name}", before, older[-1])


def _adapter(path: Path, name: str) -> Any:
    doc = load(path.read_text(encoding="utf-8"))
    adapter = (doc.get("adapters") or {}).get(name)
    if adapter is None:
        raise PromoteError(f"{path}: no adapter {name!r} under adapters:")
    return adapter


__all__ = ["Change", "PromoteError", "gate_failures", "promote_adapter", "promote_prompt", "rollback_adapter",
           "rollback_prompt"]


# --- the commands' shared plumbing (``prompts promote|rollback``, ``adapters promote|rollback``) ---
def promote_options(fn):
    """Where gate checks read evaluation runs from (as ``llm-gateway query``), and ``--force``."""
    import click

    from gateway.cli.store_client import DATA_DIR_OPTION, DSN_OPTION
    from gateway.config import environment

    for deco in reversed((
            click.option("--force", is_flag=True, help="Promote even when an evaluation gate fails (says so)."),
            click.option("--url", default=None, help="Gateway base URL to read evaluation runs through."),
            click.option("--admin-key", envvar=environment.ADMIN_KEY, default=None,
                         help="Admin key ($GATEWAY_ADMIN_KEY)."),
            DATA_DIR_OPTION, DSN_OPTION)):
        fn = deco(fn)
    return fn


def checked_config(config_path: str | None) -> tuple[Any, Callable[[], None]]:
    """The compiled config ``--config`` names, and a check that loads it again (prompts and
    chains too) and raises on a config the gateway would refuse."""
    from gateway.cli.support import load_cli_compiled
    from gateway.compiled import compile_config
    from gateway.config.resolve import load_resolved, resolve_config

    compiled = load_cli_compiled(config_path)

    def check() -> None:
        compile_config(load_resolved(resolve_config(config_path)))

    return compiled, check


def gates_or_exit(compiled: Any, name: str, version: int, force: bool, source: dict[str, Any]) -> None:
    """Exit 1 listing the failing gates of ``name@version`` (unless ``force``: then say so). Gates
    that cannot be read (no store, no gateway to query through) refuse too, unless ``force``."""
    import click

    from gateway.cli.sessions import RowSource
    from gateway.cli.support import fail, say

    snapshot = compiled.snapshot
    try:
        failures = gate_failures(snapshot.config.evaluations.gates, name, version,
                                 lambda: RowSource(snapshot, timeout=120.0, **source))
    except click.ClickException as exc:
        if not force:
            raise
        failures = [f"the gates could not be read: {exc.format_message()}"]
    if not failures:
        return
    listed = "\n".join(f"  {f}" for f in failures)
    if force:
        say(f"{name}@{version}: evaluation gates fail; promoting anyway (--force):\n{listed}")
        return
    fail(f"{name}@{version}: refused: evaluation gates fail (--force promotes anyway):\n{listed}", code=1)


def report(change: Change) -> None:
    import click

    click.echo(f"{change.file}: {change.what}: {plain_text(change.before)} -> {plain_text(change.after)} "
               "(a running gateway reloads it)")


def plain_text(value: Any) -> str:
    from gateway.cli.yaml_edit import flow

    return "(unset)" if value is None else flow(value)
