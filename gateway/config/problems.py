"""Every problem of a config in one pass, each as ``path: message``.

Pydantic stops at a model's field errors before its cross-checks run, so a file with a typo
and a dangling reference would need two rounds of fixing. After the first validation fails,
each invalid entry is replaced by a harmless stand-in of its own name (a backend, model, rule,
key or plugin: references to it still resolve) and each invalid section by its defaults, and
the config is validated again for the cross-checks alone.

An unknown key names the nearest known one (``difflib``), e.g. ``models.chat.target: unknown
key "target" (did you mean "targets"?)``.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.config.locations import format_loc

M = TypeVar("M", bound=BaseModel)

# Top-level sections whose entries are checked one by one, and a valid stand-in for each.
_NAMED = {
    "backends": lambda name: {"type": "mock"},
    "models": lambda name: {"chain": f"\0invalid-{name}"},
}
_LISTED = {
    "routes": lambda i: {"name": f"\0invalid-{i}", "strategy": "priority"},
    "keys": lambda i: {"tenant": "\0invalid", "sha256": f"{i:064x}", "id": f"invalid-{i}"},
    "plugins": lambda i: {"path": "\0invalid", "name": f"\0invalid-{i}", "enabled": False},
}


def validate(model: type[M], raw: dict) -> tuple[M | None, list[str]]:
    """``(config, [])`` when ``raw`` is valid, else ``(None, problems)``: field errors first,
    then the cross-checks of the rest."""
    try:
        return model.model_validate(raw), []
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    problems = _lines(model, errors)
    if any(e["loc"] for e in errors):  # field errors: the cross-checks did not run yet
        try:
            model.model_validate(_stand_ins(raw, errors))
        except ValidationError as again:
            problems += [p for p in _lines(model, again.errors(include_url=False)) if p not in problems]
    return None, problems


def _lines(model: type[BaseModel], errors: Sequence[Mapping[str, Any]]) -> list[str]:
    out: list[str] = []
    for err in errors:
        loc = err["loc"]
        if err["type"] == "extra_forbidden" and loc:
            msg = _unknown_key(model, loc)
        else:
            msg = err["msg"].removeprefix("Value error, ")
        where = format_loc(loc)
        out.extend(f"{where}: {line}" if where else line for line in msg.splitlines())
    return out


def _unknown_key(model: type[BaseModel], loc: tuple) -> str:
    key = str(loc[-1])
    known = fields_at(model, loc[:-1])
    if not known:
        return f'unknown key "{key}"'
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f'unknown key "{key}" (did you mean "{close[0]}"?)'
    return f'unknown key "{key}" (known: {", ".join(known)})'


def fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the model at ``loc`` (inside ``model``) accepts; ``[]`` when not a model."""
    annotation: Any = model
    for part in loc:
        target = _model_in(annotation)
        if target is not None and isinstance(part, str) and part in target.model_fields:
            annotation = target.model_fields[part].annotation
            continue
        container = _container_in(annotation)
        if container is None:
            return []
        annotation = container
    target = _model_in(annotation)
    return list(target.model_fields) if target is not None else []


def _members(annotation: Any) -> tuple:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(annotation) if a is not type(None))
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    return (annotation,)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _container_in(annotation: Any) -> Any:
    """The item type of a ``dict[str, X]`` / ``list[X]`` annotation (one loc step)."""
    for member in _members(annotation):
        origin = typing.get_origin(member)
        if origin is dict:
            return typing.get_args(member)[1]
        if origin is list:
            return typing.get_args(member)[0]
    return None


def _stand_ins(raw: dict, errors: Sequence[Mapping[str, Any]]) -> dict:
    """``raw`` with each invalid entry replaced by a stand-in and each other invalid section
    (or unknown top-level key) dropped, so only cross-check problems remain."""
    fixed = dict(raw)
    copied: set[str] = set()

    def entries(section: str):
        if section not in copied:
            fixed[section] = type(raw[section])(raw[section])
            copied.add(section)
        return fixed[section]

    for err in errors:
        loc = err["loc"]
        if not loc or loc[0] not in fixed:
            continue
        section, value = loc[0], raw.get(loc[0])
        if len(loc) > 1 and section in _NAMED and isinstance(value, dict):
            entries(section)[loc[1]] = _NAMED[section](loc[1])
        elif len(loc) > 1 and section in _LISTED and isinstance(value, list) and isinstance(loc[1], int):
            entries(section)[loc[1]] = _LISTED[section](loc[1])
        else:
            del fixed[section]
    return fixed
