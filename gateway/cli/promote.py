"""Promote and roll back: a prompt label (``prompts/<name>.yaml``) or an adapter's served version
(``adapters:`` in the gateway config), edited in place so that comments and order stay; the
running gateway hot-reloads the file.

The version a promotion replaces is remembered in the same file, so ``rollback`` needs nothing
else: a prompt file's ``previous: {<label>: [<older>, ...]}``, an adapter's ``previous: [...]``
(oldest first; rollback goes back to the last and drops it, and an emptied history). Before a promotion the
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

from ruamel.yaml.error import YAMLError

from gateway.cli.file_edit import FileEditError, held
from gateway.cli.yaml_edit import DROP, EditError, apply, load
from gateway.cli.yaml_edit import plain as _plain
from gateway.prompts.models import LABEL_RE, RESERVED_LABELS


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


def _locked_edit(path: Path, plan: Callable[[Any], tuple[list[Any], Change]], check: Callable[[], None]) -> Change:
    """Under the file's lock (``gateway.cli.file_edit``): ``plan(doc)`` gives the changes to make
    to the file as it is now; they are written, and put back when ``check()`` (loading the
    config) raises. Holding the lock from the read to the check, two commands run one after the
    other: neither's edit is lost."""
    try:
        with held(path) as file:
            changes, change = plan(load(file.text))
            try:
                file.write(apply(file.text, changes))
            except EditError as exc:
                raise PromoteError(f"{path}: {exc}") from None
            try:
                check()
            except Exception as exc:
                file.restore()
                raise PromoteError(f"{path}: the edited config is invalid; left as it was:\n{exc}") from None
            return change
    except FileEditError as exc:
        raise PromoteError(str(exc)) from None


def _read(path: Path) -> Any:
    try:
        return load(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, YAMLError) as exc:
        raise PromoteError(f"{path}: cannot be read ({str(exc).splitlines()[0]})") from None


def _prompt_plan(path: Path, doc: Any, label: str, version: int) -> tuple[list[Any], Change]:
    if not LABEL_RE.match(label) or label in RESERVED_LABELS:
        raise PromoteError(f"{path}: {label!r} is not a label name (a letter, then letters, digits, _ . -; "
                           f"not {', '.join(sorted(RESERVED_LABELS))})")
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
    return changes, Change(path, f"label {label}", _plain(before), version)


def check_prompt_promotion(path: Path, label: str, version: int) -> None:
    """Raise ``PromoteError`` when ``promote_prompt`` would refuse (before any gate is read)."""
    _prompt_plan(path, _read(path), label, version)


def promote_prompt(path: Path, label: str, version: int, check: Callable[[], None]) -> Change:
    return _locked_edit(path, lambda doc: _prompt_plan(path, doc, label, version), check)


def rollback_prompt(path: Path, label: str, check: Callable[[], None]) -> Change:
    def plan(doc: Any) -> tuple[list[Any], Change]:
        previous = _plain(doc.get("previous") or {})
        older = list(previous.get(label) or [])
        if not older:
            raise PromoteError(f"{path}: nothing to roll back to: no previous version of label {label!r}")
        before = _plain((doc.get("labels") or {}).get(label))
        changes: list[tuple[list[Any], Any, Any]] = [
            (["labels"], label, older[-1]), (["previous"], label, older[:-1] or DROP)]
        if not older[:-1] and set(previous) == {label}:  # an emptied history goes with its key
            changes.append(([], "previous", DROP))
        return changes, Change(path, f"label {label}", before, older[-1])

    return _locked_edit(path, plan, check)


def _adapter_plan(path: Path, doc: Any, name: str, version: int) -> tuple[list[Any], Change]:
    adapter = _adapter(path, doc, name)
    versions = set(adapter.get("versions") or {})
    if version not in versions:
        raise PromoteError(f"{path}: adapter {name!r} has no version {version} "
                           f"(has {', '.join(map(str, sorted(versions)))}; add its path under versions first)")
    before = adapter.get("version")
    if before == version:
        raise PromoteError(f"{path}: adapter {name!r} already serves version {version}")
    older = [*_plain(list(adapter.get("previous") or [])), before]
    changes = [(["adapters", name], "version", version), (["adapters", name], "previous", older)]
    return changes, Change(path, f"adapter {name}", before, version)


def check_adapter_promotion(path: Path, name: str, version: int) -> None:
    """Raise ``PromoteError`` when ``promote_adapter`` would refuse (before any gate is read)."""
    _adapter_plan(path, _read(path), name, version)


def promote_adapter(path: Path, name: str, version: int, check: Callable[[], None]) -> Change:
    return _locked_edit(path, lambda doc: _adapter_plan(path, doc, name, version), check)


def rollback_adapter(path: Path, name: str, check: Callable[[], None]) -> Change:
    def plan(doc: Any) -> tuple[list[Any], Change]:
        adapter = _adapter(path, doc, name)
        older = _plain(list(adapter.get("previous") or []))
        if not older:
            raise PromoteError(f"{path}: nothing to roll back to: adapter {name!r} has no previous version")
        changes = [(["adapters", name], "version", older[-1]), (["adapters", name], "previous", older[:-1] or DROP)]
        return changes, Change(path, f"adapter {name}", adapter.get("version"), older[-1])

    return _locked_edit(path, plan, check)


def _adapter(path: Path, doc: Any, name: str) -> Any:
    adapter = (doc.get("adapters") or {}).get(name)
    if adapter is None:
        raise PromoteError(f"{path}: no adapter {name!r} under adapters:")
    return adapter


__all__ = ["Change", "PromoteError", "check_adapter_promotion", "check_prompt_promotion", "gate_failures",
           "promote_adapter", "promote_prompt", "rollback_adapter", "rollback_prompt"]


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
