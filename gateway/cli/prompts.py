"""``llm-gateway prompts …``: list, show, diff, render and lock prompt versions; promote a
version to a label and roll back (``gateway.cli.promote``).

Every command reads the prompt files the way the gateway does: through the gateway config
(``--config``, resolved like every command's; its ``prompts.dir`` and model references apply)
or straight from a folder with ``--dir``. Selection uses the request syntax: ``NAME`` (label
``production``), ``NAME@label``, ``NAME@4``, ``NAME@latest``.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

import click
import orjson
import yaml

from gateway.cli.promote import (
    PromoteError,
    check_prompt_promotion,
    checked_config,
    gates_or_exit,
    promote_options,
    promote_prompt,
    report,
    rollback_prompt,
)
from gateway.cli.support import config_option
from gateway.prompts.describe import describe_version
from gateway.prompts.errors import PromptConfigError, PromptError
from gateway.prompts.loading import load_registry
from gateway.prompts.models import type_matches
from gateway.prompts.registry import CompiledVersion, PromptRegistry
from gateway.prompts.select import DEFAULT_LABEL, Ref, parse_ref


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(2)


def load_for_cli(config_path: str | None, directory: str | None) -> PromptRegistry:
    """The registry of ``--dir`` or of ``--config`` (default ``config/gateway.yaml``); exits 2
    with the problems when the files are invalid."""
    if directory:
        try:
            return load_registry(Path(directory))
        except PromptConfigError as exc:
            _fail(f"{directory}: invalid prompts\n" + "\n".join(f"  {p}" for p in exc.problems))
    from gateway.cli.support import load_cli_compiled

    compiled = load_cli_compiled(config_path)
    registry = compiled.prompts
    if registry is None or registry.directory is None:
        _fail(f"{compiled.snapshot.source}: no prompt folder (set prompts.dir, or add prompts/ beside the config; "
              "or give --dir PROMPTS_DIR)")
    return registry


def _source_options(fn):
    fn = click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
                      help="Prompt folder to read directly (instead of --config).")(fn)
    fn = config_option(fn)
    return fn


def _resolve(registry: PromptRegistry, text: str, key: str | None = None, lenient: bool = False):
    """Resolve a CLI reference. ``lenient``: a bare name without a ``production`` label shows
    the latest version instead of failing."""
    try:
        ref = parse_ref(text)
        prompt = registry.get(ref.name)
        if lenient and ref.label is None and ref.version is None and DEFAULT_LABEL not in prompt.labels:
            ref = Ref(ref.name, version=prompt.latest)
        return registry.resolve(ref, key)
    except PromptError as exc:
        _fail(exc.message)


class _BlockDumper(yaml.SafeDumper):
    """YAML with multi-line strings as ``|`` blocks (readable diffs)."""


def _str_representer(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)


def version_text(cv: CompiledVersion) -> str:
    """A version as YAML (what ``show`` prints and ``diff`` compares)."""
    data = describe_version(cv)
    data.pop("first_seen")
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100)


@click.group("prompts")
def prompts() -> None:
    """Versioned prompts: list, show, diff, render, lock, promote, roll back."""


@prompts.command("list")
@_source_options
def list_cmd(config_path: str | None, directory: str | None) -> None:
    """Every prompt with its versions and labels."""
    registry = load_for_cli(config_path, directory)
    if not registry.prompts:
        click.echo(f"no prompts in {registry.directory}")
        return
    rows = [("NAME", "VERSIONS", "LATEST", "LABELS", "DESCRIPTION")]
    for name in sorted(registry.prompts):
        p = registry.prompts[name]
        labels = ", ".join(f"{label}={p.labels[label].describe()}" for label in sorted(p.labels)) or "-"
        rows.append((name, ",".join(map(str, sorted(p.versions))), str(p.latest), labels, p.description))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])


@prompts.command("show")
@click.argument("ref")
@_source_options
def show_cmd(ref: str, config_path: str | None, directory: str | None) -> None:
    """Show one version: NAME (production, else latest), NAME@label or NAME@version."""
    registry = load_for_cli(config_path, directory)
    name = ref.partition("@")[0]
    prompt = registry.get(name) if name in registry.prompts else None
    resolved = _resolve(registry, ref, lenient=True)
    label = prompt.labels.get(resolved.label) if prompt is not None and resolved.label else None
    versions = [resolved.version]
    experiment = prompt is not None and label is not None and bool(label.arms)
    if prompt is not None and label is not None and label.arms:
        click.echo(f"# {name}@{resolved.label} is an experiment: {label.describe()}")
        versions = [prompt.versions[v] for v, _ in label.arms]
    for cv in versions:
        via = f" (label {resolved.label})" if resolved.label and not experiment else ""
        click.echo(f"# {cv.prompt}@{cv.version}{via} from {cv.source}")
        click.echo(version_text(cv).rstrip())
    if prompt is not None:
        labels = ", ".join(f"{n}={lb.describe()}" for n, lb in sorted(prompt.labels.items())) or "none"
        click.echo(f"# labels: {labels}; versions: {', '.join(map(str, sorted(prompt.versions)))}")


@prompts.command("diff")
@click.argument("name")
@click.argument("a")
@click.argument("b")
@_source_options
def diff_cmd(name: str, a: str, b: str, config_path: str | None, directory: str | None) -> None:
    """Unified diff of two versions of NAME (each a version number or a label)."""
    registry = load_for_cli(config_path, directory)
    left = _resolve(registry, f"{name}@{a}").version
    right = _resolve(registry, f"{name}@{b}").version
    lines = difflib.unified_diff(version_text(left).splitlines(keepends=True),
                                 version_text(right).splitlines(keepends=True),
                                 fromfile=f"{name}@{left.version}", tofile=f"{name}@{right.version}")
    out = "".join(lines)
    click.echo(out.rstrip("\n") if out else f"{name}@{left.version} and {name}@{right.version} are identical")


def _coerce(cv: CompiledVersion, key: str, text: str) -> Any:
    declared = {v.name: v for v in cv.spec.variables}
    var = declared.get(key)
    vtype = var.type if var is not None else "string"
    if vtype == "string":
        return text
    if vtype == "boolean" and text.lower() in ("true", "false", "yes", "no", "1", "0"):
        return text.lower() in ("true", "yes", "1")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        if vtype == "any":
            return text
        _fail(f"--var {key}: {text!r} is not a valid {vtype} (JSON)")
    if not type_matches(vtype, value):
        _fail(f"--var {key}: {text!r} is not of type {vtype}")
    return value


@prompts.command("render")
@click.argument("ref")
@click.option("--var", "pairs", multiple=True, metavar="NAME=VALUE",
              help="A variable (repeatable); non-string types are given as JSON (3, true, [1,2]).")
@click.option("--vars", "vars_json", default=None, help="Variables as one JSON object (before --var).")
@click.option("--key", default=None, help="Experiment key (a user/tenant) for a weighted label.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (messages, params, version).")
@_source_options
def render_cmd(ref: str, pairs: tuple[str, ...], vars_json: str | None, key: str | None, as_json: bool,
               config_path: str | None, directory: str | None) -> None:
    """Print the messages NAME[@label|@version] renders to (what would be sent upstream)."""
    registry = load_for_cli(config_path, directory)
    resolved = _resolve(registry, ref, key=f"h:{key}" if key is not None else None)
    cv = resolved.version
    variables: dict[str, Any] = {}
    if vars_json:
        try:
            variables = orjson.loads(vars_json)
        except orjson.JSONDecodeError:
            _fail("--vars must be a JSON object")
        if not isinstance(variables, dict):
            _fail("--vars must be a JSON object")
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if not sep or not k:
            _fail(f"--var {pair!r}: expected NAME=VALUE")
        variables[k] = _coerce(cv, k, v)
    try:
        messages = cv.render(variables, param="variables")
    except PromptError as exc:
        _fail(exc.message)
    if as_json:
        click.echo(orjson.dumps({"prompt": cv.prompt, "version": cv.version, "label": resolved.label,
                                 "experiment_arm": resolved.arm, "mode": cv.mode, "content_hash": cv.content_hash,
                                 "messages": messages, "params": cv.params}, option=orjson.OPT_INDENT_2).decode())
        return
    via = f", label {resolved.label}" if resolved.label else ""
    arm = f", arm {resolved.arm}" if resolved.arm else ""
    click.echo(f"# {cv.prompt}@{cv.version}{via}{arm}; mode {cv.mode}; hash {cv.short_hash}", err=True)
    for m in messages:
        click.secho(f"[{m['role']}{' ' + m['name'] if 'name' in m else ''}]", bold=True)
        click.echo(m["content"])
    if cv.params:
        click.echo(f"# params: {orjson.dumps(cv.params).decode()}", err=True)


@prompts.command("lock")
@_source_options
def lock_cmd(config_path: str | None, directory: str | None) -> None:
    """Record every version's content hash in the lock file (commit it with the prompts)."""
    registry = load_for_cli(config_path, directory)
    written = registry.record()
    total = len(registry.versions())
    click.echo(f"{registry.lock_path}: {'updated' if written else 'up to date'} ({total} versions)")


def _prompt_file(compiled: Any, name: str) -> Path:
    """The file of prompt ``name`` in the config's prompt folder (exits 2 when there is none)."""
    registry = compiled.prompts
    if registry is None or registry.directory is None:
        _fail(f"{compiled.snapshot.source}: no prompt folder (set prompts.dir, or add prompts/ beside the config)")
    directory = Path(registry.directory)
    for suffix in (".yaml", ".yml"):
        if (directory / f"{name}{suffix}").is_file():
            return directory / f"{name}{suffix}"
    _fail(f"{directory}: no prompt {name!r}")
    raise AssertionError  # _fail exits


@prompts.command("promote")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--label", default=DEFAULT_LABEL, show_default=True, help="The label to point at VERSION.")
@config_option
@promote_options
def promote_cmd(name: str, version: int, label: str, config_path: str | None, force: bool, url: str | None,
                admin_key: str | None, data_dir: str | None, dsn: str | None) -> None:
    """Point LABEL of prompt NAME at VERSION (its evaluation gates must pass): edits the prompt file
    in place, remembering the version before under `previous:` for `prompts rollback`."""
    compiled, check = checked_config(config_path)
    path = _prompt_file(compiled, name)
    try:
        check_prompt_promotion(path, label, version)  # a wrong version or label is said before any gate
        gates_or_exit(compiled, name, version, force, {"url": url, "admin_key": admin_key, "dsn": dsn,
                                                        "data_dir": data_dir})
        report(promote_prompt(path, label, version, check))
    except PromoteError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


@prompts.command("rollback")
@click.argument("name")
@click.option("--label", default=DEFAULT_LABEL, show_default=True, help="The label to roll back.")
@config_option
def rollback_cmd(name: str, label: str, config_path: str | None) -> None:
    """Point LABEL of prompt NAME back at what it was before the last promotion."""
    compiled, check = checked_config(config_path)
    path = _prompt_file(compiled, name)
    try:
        report(rollback_prompt(path, label, check))
    except PromoteError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
