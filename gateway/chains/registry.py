"""The chain registry: chain files compiled, validated and cross-checked into one immutable object.

``compile_chains(snapshot, prompts)`` is the chains feature's part of compiling a config
(``ChainsFeature.compile`` on start-up and reload, after the prompts; ``gateway.compiled`` for
commands). It takes every ``*.yaml`` the snapshot read from the chain folder (one chain per
file, named by the file), validates it, and checks every step against the config in the same
snapshot: the step's model exists and is not a chain, its prompt resolves in the prompt
registry, the chain fits ``chains.max_steps``. ``models.<name>.chain`` references are checked
too. Problems are ``path: message`` strings, raised as one ``ConfigError``, so a bad edit
keeps the running config. Each chain carries its ``version`` and the hash of its file, stamped
on the rows of its runs; the files' digest is part of the config hash (``gateway.config.files``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.chains.models import ChainFile, Step
from gateway.config.files import Folder
from gateway.config.loader import ConfigError, ConfigSnapshot
from gateway.config.locations import format_loc
from gateway.prompts.errors import PromptError
from gateway.prompts.files import read_named_files
from gateway.prompts.select import Ref, parse_ref


@dataclass(frozen=True, slots=True)
class Chain:
    """One compiled chain. ``refs``: each step's parsed prompt reference (or ``None``)."""

    name: str
    spec: ChainFile
    content_hash: str
    source: str
    deadline_s: float
    max_steps: int
    refs: tuple[Ref | None, ...]
    queries: tuple[Any, ...] = ()  # each retrieve step's compiled query template (``None`` for other steps)

    @property
    def steps(self) -> list[Step]:
        return self.spec.steps

    @property
    def version(self) -> int:
        return self.spec.version


@dataclass(frozen=True, eq=False)
class ChainRegistry:
    """Every chain of a config snapshot. ``by_model``: public model name → its ``Chain``."""

    chains: dict[str, Chain] = field(default_factory=dict)
    directory: str | None = None
    digest: str = ""
    by_model: dict[str, Chain] = field(default_factory=dict)


def _parse(path: Path, data: bytes, problems: list[str]) -> ChainFile | None:
    try:
        raw = yaml.safe_load(data.decode("utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: YAML syntax: {exc}")
        return None
    if not isinstance(raw, dict):
        problems.append(f"{path}: top level must be a mapping")
        return None
    try:
        return ChainFile.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            where = format_loc(err["loc"])
            problems.append(f"{path}: {where}: {msg}" if where else f"{path}: {msg}")
        return None


def _query_template(step: Step, where: str, problems: list[str]) -> Any:
    """A retrieve step's query template, compiled in the prompts' sandbox (``None`` for a model
    step, or on a syntax error, which goes to ``problems``)."""
    if step.retrieve is None:
        return None
    from jinja2 import TemplateSyntaxError

    from gateway.prompts.render import make_environment

    try:
        return make_environment().from_string(step.retrieve.query)
    except TemplateSyntaxError as exc:
        problems.append(f"{where}.retrieve.query: template syntax error at line {exc.lineno}: {exc.message}")
        return None


def compile_chains(snapshot: ConfigSnapshot, prompts) -> ChainRegistry | None:
    """The chain registry of ``snapshot`` (``None``: neither a chain folder nor a chain model).
    ``prompts``: the snapshot's compiled ``PromptRegistry`` or ``None``. Raises ``ConfigError``."""
    registry, problems = load_chains(snapshot.chain_files, snapshot.config, prompts)
    if problems:
        raise ConfigError(snapshot.source, problems)
    return registry


def load_chains(folder: Folder, config, prompts) -> tuple[ChainRegistry | None, list[str]]:
    """``(registry, problems)`` for the chain files of ``folder`` and ``config`` (a
    ``GatewayConfig``); ``prompts``: the snapshot's ``PromptRegistry`` or ``None``. ``None``
    registry when there is neither a chain folder nor a chain model."""
    directory = folder.directory
    refs = {name: m.chain for name, m in config.models.items() if m.chain}
    if not folder.files and not refs and not folder.exists:
        return None, []
    problems: list[str] = []
    settings = config.chains
    chains: dict[str, Chain] = {}
    for path, data in read_named_files(folder.files, "chain", problems):
        spec = _parse(path, data, problems)
        if spec is None:
            continue
        step_refs: list[Ref | None] = []
        limit = min(spec.max_steps or settings.max_steps, settings.max_steps)
        if len(spec.steps) > limit:
            problems.append(f"{path}: steps: {len(spec.steps)} steps exceed the limit of {limit} "
                            "(chains.max_steps)")
        queries: list[Any] = []
        for i, step in enumerate(spec.steps):
            where = f"{path}: steps[{i}] ({step.name})"
            queries.append(_query_template(step, where, problems))
            if step.retrieve is not None:
                step_refs.append(None)
                continue
            assert step.model is not None  # a step without retrieve names a model (models.Step)
            target = config.models.get(step.model)
            if target is None:
                problems.append(f'{where}.model: unknown model "{step.model}"')
            elif target.chain is not None:
                problems.append(f'{where}.model: "{step.model}" is a chain; a step calls a model, not a chain')
            ref = None
            if step.prompt is not None:
                try:
                    ref = parse_ref(step.prompt)
                    if prompts is None:
                        raise PromptError("no prompt folder is configured")
                    prompts.resolve(ref, key="")
                except PromptError as exc:
                    problems.append(f"{where}.prompt: {exc.message}")
            step_refs.append(ref)
        chains[path.stem] = Chain(
            name=path.stem, spec=spec, content_hash=hashlib.sha256(data).hexdigest(), source=str(path),
            deadline_s=spec.deadline_s or settings.deadline_s, max_steps=limit, refs=tuple(step_refs),
            queries=tuple(queries))
    by_model = {}
    for model, name in refs.items():
        chain = chains.get(name)
        if chain is None:
            known = ", ".join(sorted(chains)) or "none"
            where = f" in {directory}" if directory is not None else " (no chain folder)"
            problems.append(f'models.{model}.chain: unknown chain "{name}"{where} (known: {known})')
            continue
        by_model[model] = chain
    registry = ChainRegistry(chains=chains, directory=str(directory) if directory is not None else None,
                             digest=folder.digest, by_model=by_model)
    return registry, problems


__all__ = ["Chain", "ChainRegistry", "compile_chains", "load_chains"]
