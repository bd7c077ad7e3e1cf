"""Building a ``PromptRegistry`` from a directory of prompt files: each file parsed and
validated, its templates compiled, each version's content hash checked against the lock file
and the registry in force (immutability), and ``models.<name>.prompt`` references resolved.

``compile_prompts(snapshot, previous)`` is the prompts feature's part of compiling a config
(``PromptsFeature.compile`` on start-up and reload; ``gateway.compiled`` for commands): the
prompt files the snapshot read, compiled, or a ``ConfigError`` with every problem."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from pydantic import ValidationError

from gateway.config.files import Folder, read_folder
from gateway.config.loader import ConfigError, ConfigSnapshot
from gateway.config.locations import format_loc
from gateway.prompts.errors import PromptConfigError, PromptError
from gateway.prompts.files import read_named_files
from gateway.prompts.lock import LockFile
from gateway.prompts.models import PromptFile, Version
from gateway.prompts.registry import EMPTY, CompiledVersion, Label, Prompt, PromptRegistry, content_hash
from gateway.prompts.render import compile_template, make_environment
from gateway.prompts.select import parse_ref


def _compile_version(env, name: str, spec: Version, where: str, problems: list[str], first_seen: float,
                     source: str) -> CompiledVersion | None:
    declared = {v.name for v in spec.variables}
    templates = []
    ok = True
    for j, message in enumerate(spec.messages):
        try:
            template, used = compile_template(env, message.content, declared)
        except ValueError as exc:
            problems.append(f"{where}.messages[{j}].content: {exc}")
            ok = False
            continue
        templates.append((message.role, message.name, template, frozenset(used)))
    if not ok:
        return None
    cv = CompiledVersion(prompt=name, version=spec.version, spec=spec, content_hash=content_hash(spec),
                         templates=tuple(templates), static=None, first_seen=first_seen, source=source)
    if not spec.variables:
        try:
            static = tuple(cv.render({}))
        except PromptError as exc:
            problems.append(f"{where}: {exc.message}")
            return None
        cv = CompiledVersion(prompt=name, version=spec.version, spec=spec, content_hash=cv.content_hash,
                             templates=cv.templates, static=static, first_seen=first_seen, source=source)
    return cv


def _parse_file(path: Path, data: bytes, rel: str, problems: list[str]) -> PromptFile | None:
    try:
        raw = yaml.safe_load(data.decode("utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problems.append(f"{rel}: YAML syntax: {exc}")
        return None
    if not isinstance(raw, dict):
        problems.append(f"{rel}: top level must be a mapping")
        return None
    try:
        parsed = PromptFile.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            loc = format_loc(err["loc"])
            problems.append(f"{rel}: {loc}: {msg}" if loc else f"{rel}: {msg}")
        return None
    if parsed.name is not None and parsed.name != path.stem:
        problems.append(f"{rel}: name: {parsed.name!r} differs from the file name {path.stem!r}")
        return None
    return parsed


def load_registry(directory: str | Path | None, lock_path: str | Path | None = None,
                  previous: PromptRegistry | None = None, *, display_base: Path | None = None) -> PromptRegistry:
    """Read, then compile, every prompt in ``directory`` (``compile_folder``). Raises
    ``PromptConfigError``."""
    if directory is None:
        return EMPTY
    return compile_folder(read_folder(directory), lock_path, previous, display_base=display_base)


def compile_folder(folder: Folder, lock_path: str | Path | None = None, previous: PromptRegistry | None = None, *,
                   display_base: Path | None = None) -> PromptRegistry:
    """Compile every prompt file of ``folder`` (as read; ``folder.directory`` is set).

    ``lock_path``: the immutability record (default ``<directory>/versions.lock``).
    ``previous``: the registry in force, also treated as a record (compiling never writes;
    ``PromptRegistry.record()`` does). ``display_base``: paths in problems are shown relative to
    it. Raises ``PromptConfigError``.
    """
    assert folder.directory is not None  # a folder that was configured
    d = folder.directory
    lock = LockFile(Path(lock_path) if lock_path else d / "versions.lock")
    problems: list[str] = []

    def rel(p: Path) -> str:
        if display_base is not None:
            try:
                return str(p.relative_to(display_base))
            except ValueError:
                pass
        return str(p)

    try:
        recorded = lock.read()
    except ValueError as exc:
        raise PromptConfigError([f"{rel(lock.path)}: {exc}"]) from None
    env = make_environment()
    now = time.time()
    prompts: dict[str, Prompt] = {}
    for path, data in read_named_files(folder.files, "prompt", problems, rel):
        rp = rel(path)
        parsed = _parse_file(path, data, rp, problems)
        if parsed is None:
            continue
        name = path.stem
        seen_numbers: set[int] = set()
        versions: dict[int, CompiledVersion] = {}
        old = previous.prompts.get(name) if previous is not None else None
        for i, spec in enumerate(parsed.versions):
            where = f"{rp}: versions[{i}] (version {spec.version})"
            if spec.version in seen_numbers:
                problems.append(f"{where}: version {spec.version} is defined twice")
                continue
            seen_numbers.add(spec.version)
            digest = content_hash(spec)
            entry = recorded.get(name, {}).get(spec.version)
            before = old.versions.get(spec.version) if old is not None else None
            known_hash = entry.hash if entry is not None else (before.content_hash if before is not None else None)
            if known_hash is not None and known_hash != digest:
                record_name = rel(lock.path) if entry is not None else "the configuration in force"
                problems.append(
                    f"{where}: content changed since it was first seen (hash {known_hash[:12]} → {digest[:12]}, "
                    f"recorded in {record_name}); versions are immutable: add a new version "
                    f"(e.g. version {max(seen_numbers | {v.version for v in parsed.versions}) + 1}) instead")
                continue
            first_seen = entry.first_seen if entry is not None else (before.first_seen if before else now)
            cv = _compile_version(env, name, spec, where, problems, first_seen, rp)
            if cv is not None:
                versions[spec.version] = cv
        labels: dict[str, Label] = {}
        for label_name, target in parsed.labels.items():
            where = f"{rp}: labels.{label_name}"
            if isinstance(target, int):
                if target not in seen_numbers:
                    problems.append(f"{where}: unknown version {target} "
                                    f"(versions: {', '.join(map(str, sorted(seen_numbers)))})")
                    continue
                labels[label_name] = Label(label_name, version=target)
            else:
                missing = sorted(set(target) - seen_numbers)
                if missing:
                    problems.append(f"{where}: unknown version(s) {', '.join(map(str, missing))} "
                                    f"(versions: {', '.join(map(str, sorted(seen_numbers)))})")
                    continue
                arms = tuple(sorted((v, float(w)) for v, w in target.items() if w > 0))
                labels[label_name] = Label(label_name, arms=arms)
        prompts[name] = Prompt(name=name, description=parsed.description, versions=versions, labels=labels,
                               source=rp)
    if problems:
        raise PromptConfigError(problems)
    return PromptRegistry(prompts=prompts, directory=str(d), lock_path=str(lock.path), digest=folder.digest)


def with_models(registry: PromptRegistry, model_refs: dict[str, str]) -> tuple[PromptRegistry, list[str]]:
    """``registry`` with ``by_model`` filled from ``models.<name>.prompt`` references; returns
    it and the problems (``models.X.prompt: …``) of references that do not resolve."""
    problems = []
    by_model = {}
    for model, text in model_refs.items():
        where = f"models.{model}.prompt"
        try:
            ref = parse_ref(text)
            registry.resolve(ref, key="")  # the prompt, label or version must exist
        except PromptError as exc:
            problems.append(f"{where}: {exc.message}")
            continue
        by_model[model] = ref
    if not by_model:
        return registry, problems
    return PromptRegistry(prompts=registry.prompts, directory=registry.directory, lock_path=registry.lock_path,
                          digest=registry.digest, by_model=by_model), problems


def compile_prompts(snapshot: ConfigSnapshot, previous: PromptRegistry | None = None) -> PromptRegistry | None:
    """The prompt registry of ``snapshot`` (``None``: no prompt folder and no model names a
    prompt). ``previous``: the registry in force, whose versions count as recorded (a reload
    may not change them). Raises ``ConfigError`` with every problem, paths first."""
    config = snapshot.config
    folder = snapshot.prompt_files
    refs = {name: m.prompt for name, m in config.models.items() if m.prompt}
    if folder.directory is None and not refs:
        return None
    lock: str | Path | None = config.prompts.lock_file
    if lock and snapshot.base_dir is not None and not Path(lock).is_absolute():
        lock = snapshot.base_dir / lock
    try:
        registry = EMPTY if folder.directory is None else compile_folder(folder, lock, previous)
    except PromptConfigError as exc:
        raise ConfigError(snapshot.source, exc.problems) from None
    registry, problems = with_models(registry, refs)
    if problems:
        raise ConfigError(snapshot.source, problems)
    return registry


__all__ = ["compile_folder", "compile_prompts", "load_registry", "with_models"]
