"""The prompt registry: prompt files loaded, validated and compiled into one immutable object.

``load_registry(directory, lock_path, previous)`` (in ``loading.py``) reads every ``*.yaml`` in ``directory``
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from gateway.prompts.errors import PromptError
from gateway.prompts.lock import LockFile
from gateway.prompts.models import Version
from gateway.prompts.render import bind_variables, render_template
from gateway.prompts.select import DEFAULT_LABEL, LATEST, Ref, pick_arm


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


__all__ = ["CompiledVersion", "EMPTY", "Label", "Prompt", "PromptRegistry", "Resolved", "content_hash"]
