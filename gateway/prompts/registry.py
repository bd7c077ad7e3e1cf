"""The prompt registry: prompt files loaded, validated and compiled into one immutable object.

``load_registry(directory, lock_path, previous)`` reads every ``*.yaml`` in ``directory``
(one prompt per file, named by the file), validates it, compiles its templates, computes each
version's content hash and enforces immutability: a version whose content differs from what
was seen before under the same number is a config error naming the file and the version.
"Seen before" is the lock file (``versions.lock`` beside the prompts; see ``lock.py``) plus the
registry in force (so a hot reload is checked even where the lock cannot be written).

A ``PromptRegistry`` answers ``resolve(name, label, version, key)`` for the injection stage
and the CLI; it never changes after it is built (a reload builds a new one).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from gateway.config.locations import format_loc
from gateway.prompts.errors import PromptConfigError, PromptError
from gateway.prompts.lock import LockFile
from gateway.prompts.models import NAME_RE, PromptFile, Version
from gateway.prompts.render import bind_variables, compile_template, make_environment, render_template
from gateway.prompts.select import DEFAULT_LABEL, LATEST, Ref, pick_arm

PROMPT_SUFFIXES = (".yaml", ".yml")


def content_hash(version: Version) -> str:
    """SHA-256 (hex) of what a version sends: messages, variables, params and mode (not the note)."""
    canonical = version.model_dump(mode="json", exclude={"note", "version"})
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class CompiledVersion:
    """One version ready to render. ``templates``: ``(role, name, template, used_names)``
    per message; ``static``: the rendered messages when the version declares no variables
    (rendered once at load); ``first_seen``: epoch seconds the version was first recorded."""

    prompt: str
    version: int
    spec: Version
    content_hash: str
    templates: tuple
    static: tuple[dict, ...] | None
    first_seen: float
    source: str

    @property
    def mode(self) -> str:
        return self.spec.mode

    @property
    def params(self) -> dict[str, Any]:
        return self.spec.params

    @property
    def short_hash(self) -> str:
        return self.content_hash[:12]

    def render(self, variables: dict[str, Any] | None, param: str = "prompt.variables") -> list[dict]:
        """The messages of this version for ``variables`` (fresh dicts; raises ``PromptError``)."""
        where = f"prompt {self.prompt}@{self.version}"
        if self.static is not None:
            return [dict(m) for m in self.static]
        values = bind_variables(tuple(self.spec.variables), variables, where, param)
        out = []
        for i, (role, name, template, used) in enumerate(self.templates):
            text = render_template(template, values, f"{where} messages[{i}]", used, param)
            message = {"role": role, "content": text}
            if name is not None:
                message["name"] = name
            out.append(message)
        return out

    def source_messages(self) -> list[dict]:
        """The message templates as written (for ``prompt_versions`` and ``prompts show``)."""
        return [m.model_dump(exclude_none=True) for m in self.spec.messages]


@dataclass(frozen=True, slots=True)
class Label:
    """A label: a fixed ``version``, or weighted experiment ``arms`` ``((version, weight), …)``."""

    name: str
    version: int | None = None
    arms: tuple[tuple[int, float], ...] = ()

    def describe(self) -> str:
        if self.version is not None:
            return str(self.version)
        total = sum(w for _, w in self.arms)
        return " / ".join(f"{v}:{w / total * 100:g}%" for v, w in self.arms)

    def as_config(self) -> int | dict[int, float]:
        return self.version if self.version is not None else {v: w for v, w in self.arms}


@dataclass(frozen=True, slots=True)
class Prompt:
    """One prompt: its versions by number, its labels by name, the file it came from."""

    name: str
    description: str
    versions: dict[int, CompiledVersion]
    labels: dict[str, Label]
    source: str

    @property
    def latest(self) -> int:
        return max(self.versions)


@dataclass(frozen=True, slots=True)
class Resolved:
    """The outcome of a selection: the version, the label it came through ("" for an explicit
    version) and the experiment arm (``"<label>:<version>"`` when a weighted label chose it)."""

    version: CompiledVersion
    label: str
    arm: str


@dataclass(frozen=True, eq=False)
class PromptRegistry:
    """Every prompt of one config snapshot, compiled. ``directory``: where the files are
    (``None``: no prompts). ``digest``: hash of the files' bytes (feeds the config hash).
    ``by_model``: public model name → the ``Ref`` its config names (``models.X.prompt``)."""

    prompts: dict[str, Prompt] = field(default_factory=dict)
    directory: str | None = None
    lock_path: str | None = None
    digest: str = ""
    by_model: dict[str, Ref] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.prompts)

    def get(self, name: str, param: str | None = None) -> Prompt:
        """The prompt ``name``; ``PromptError`` when unknown."""
        prompt = self.prompts.get(name)
        if prompt is None:
            known = ", ".join(sorted(self.prompts)) or "none configured"
            raise PromptError(f"unknown prompt {name!r} (known: {known})", param=param)
        return prompt

    def resolve(self, ref: Ref, key: str | None = None, param: str | None = None) -> Resolved:
        """Pick the version ``ref`` selects. ``key``: the caller's sticky experiment key (a
        weighted label hashes it to an arm; ``None`` falls back to arm weights at random)."""
        prompt = self.get(ref.name, param)
        if ref.version is not None:
            cv = prompt.versions.get(ref.version)
            if cv is None:
                raise PromptError(f"prompt {ref.name!r} has no version {ref.version} "
                                  f"(versions: {', '.join(map(str, sorted(prompt.versions)))})", param=param)
            return Resolved(cv, "", "")
        label_name = ref.label or DEFAULT_LABEL
        if label_name == LATEST:
            return Resolved(prompt.versions[prompt.latest], LATEST, "")
        label = prompt.labels.get(label_name)
        if label is None:
            known = ", ".join(sorted(prompt.labels)) or "none"
            raise PromptError(f"prompt {ref.name!r} has no label {label_name!r} (labels: {known}; "
                              f"or select a version: {ref.name}@{prompt.latest})", param=param)
        if label.version is not None:
            return Resolved(prompt.versions[label.version], label_name, "")
        chosen = pick_arm(label.arms, f"{ref.name}\0{label_name}", key)
        return Resolved(prompt.versions[chosen], label_name, f"{label_name}:{chosen}")

    def record(self) -> bool:
        """Add versions not yet in the lock file to it (``first_seen`` as loaded); returns
        whether the file was written. A failed write is logged, never raised."""
        if not self.prompts or not self.lock_path:
            return False
        lock = LockFile(Path(self.lock_path))
        try:
            recorded = lock.read()
        except ValueError:
            return False
        new = {(cv.prompt, cv.version): (cv.content_hash, cv.first_seen) for cv in self.versions()
               if cv.version not in recorded.get(cv.prompt, {})}
        return lock.add(new) if new else False

    def versions(self) -> list[CompiledVersion]:
        """Every version of every prompt (sorted by name, then number)."""
        out: list[CompiledVersion] = []
        for name in sorted(self.prompts):
            prompt = self.prompts[name]
            out.extend(prompt.versions[v] for v in sorted(prompt.versions))
        return out


EMPTY = PromptRegistry()


def prompt_files(directory: Path) -> list[Path]:
    """The prompt files of ``directory`` (sorted; hidden files and the lock are skipped)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.suffix in PROMPT_SUFFIXES and not p.name.startswith(".") and p.is_file())


def read_named_files(paths: list[Path], kind: str, problems: list[str], raw_files: list[tuple[str, bytes]],
                     label=str):
    """Yield ``(path, data)`` for each readable file whose stem is a valid, not yet seen name.

    Every file read is appended to ``raw_files`` (it feeds the config hash, invalid or not);
    unreadable files, bad names and a name defined twice (``.yaml`` and ``.yml``) are reported
    in ``problems`` as ``<label(path)>: …``. ``kind``: ``prompt`` or ``chain``, for messages.
    """
    seen: set[str] = set()
    for path in paths:
        where = label(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            problems.append(f"{where}: cannot read: {exc.strerror}")
            continue
        raw_files.append((path.name, data))
        if not NAME_RE.match(path.stem):
            problems.append(f"{where}: {path.stem!r} is not a valid {kind} name (letters, digits, _ . -)")
            continue
        if path.stem in seen:
            problems.append(f"{where}: {kind} {path.stem!r} is defined twice (.yaml and .yml)")
            continue
        seen.add(path.stem)
        yield path, data


def files_digest(files: list[tuple[str, bytes]]) -> str:
    """Hash of ``(name, bytes)`` pairs in order (the prompt part of the config hash)."""
    h = hashlib.sha256()
    for name, data in files:
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()


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
    """Load and compile every prompt in ``directory``.

    ``lock_path``: the immutability record (default ``<directory>/versions.lock``).
    ``previous``: the registry in force, also treated as a record (loading never writes;
    ``PromptRegistry.record()`` does). ``display_base``: paths in problems are shown relative to it. Raises ``PromptConfigError``.
    """
    if directory is None:
        return EMPTY
    d = Path(directory)
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
    raw_files: list[tuple[str, bytes]] = []
    for path, data in read_named_files(prompt_files(d), "prompt", problems, raw_files, rel):
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
    return PromptRegistry(prompts=prompts, directory=str(d), lock_path=str(lock.path),
                          digest=files_digest(raw_files) if raw_files else "")


def with_models(registry: PromptRegistry, model_refs: dict[str, str]) -> tuple[PromptRegistry, list[str]]:
    """``registry`` with ``by_model`` filled from ``models.<name>.prompt`` references; returns
    it and the problems (``models.X.prompt: …``) of references that do not resolve."""
    from gateway.prompts.select import parse_ref

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


__all__ = ["CompiledVersion", "EMPTY", "Label", "Prompt", "PromptRegistry", "Resolved", "content_hash",
           "files_digest", "load_registry", "prompt_files", "with_models"]
