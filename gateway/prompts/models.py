"""Pydantic models of one prompt file (``config/prompts/<name>.yaml``).

A file holds the versions of one prompt and its labels::

    description: Customer support assistant
    versions:
      - version: 1
        note: first cut
        variables:
          - {name: product, type: string}
          - {name: tone, type: string, default: friendly}
        messages:
          - {role: system, content: "You support {{ product }}. Be {{ tone }}."}
        params: {temperature: 0.2, max_tokens: 300}
    labels:
      production: 1
      canary: {1: 90, 2: 10}

Like the gateway config, every model forbids unknown keys, so a typo is an error naming its
path. Cross-checks that need the whole file (label targets, duplicate versions, template
variables) live in ``registry.py``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Mode = Literal["prepend", "replace_system", "template"]
VarType = Literal["string", "integer", "number", "boolean", "array", "object", "any"]
Role = Literal["system", "developer", "user", "assistant"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
LABEL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Reserved selectors: ``latest`` is the highest version, never a label of the file.
RESERVED_LABELS = frozenset({"latest"})
# Request fields a prompt's default params may not set: they belong to the caller or the gateway.
FORBIDDEN_PARAMS = frozenset({"model", "messages", "stream", "stream_options", "prompt", "user", "metadata"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variable(_Strict):
    """A declared template variable.

    ``type``: JSON type the value must have (``any`` skips the check; ``number`` accepts
    integers too; booleans are never integers). A variable with a ``default`` is optional;
    one without is required unless ``required: false`` (then it renders as absent and the
    template must cope, e.g. ``{% if x is defined %}``).
    """

    name: str
    type: VarType = "string"
    required: bool | None = None
    default: Any = None
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not VAR_RE.match(value):
            raise ValueError(f"{value!r} is not a valid variable name (letters, digits, _)")
        return value

    @model_validator(mode="after")
    def _default_consistent(self) -> Variable:
        if self.default is not None and self.required:
            raise ValueError(f"variable {self.name!r} is required but has a default")
        if self.default is not None and not type_matches(self.type, self.default):
            raise ValueError(f"default of variable {self.name!r} is not of type {self.type}")
        return self

    @property
    def is_required(self) -> bool:
        """Required: explicitly, or by having no default (and not ``required: false``)."""
        if self.required is not None:
            return self.required
        return self.default is None


class Message(_Strict):
    """One message of a version: ``role`` and a Jinja2 template ``content``; optional ``name``."""

    role: Role
    content: str
    name: str | None = None


class Version(_Strict):
    """One immutable version of a prompt.

    ``version``: positive integer, unique in the file. ``messages``: the templates.
    ``variables``: declared variables (templates may use no others). ``params``: default
    request parameters (``temperature``, ``max_tokens``, ``response_format``, ``tools`` …)
    applied when the caller did not set them. ``mode``: how the messages are injected
    (``prepend`` by default). ``note``: free text (not part of the content hash).
    """

    version: int = Field(ge=1)
    messages: list[Message] = Field(min_length=1)
    variables: list[Variable] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    mode: Mode = "prepend"
    note: str = ""

    @field_validator("params")
    @classmethod
    def _params(cls, params: dict[str, Any]) -> dict[str, Any]:
        bad = sorted(set(params) & FORBIDDEN_PARAMS)
        if bad:
            raise ValueError(f"params may not set {', '.join(bad)}")
        checks: dict[str, Callable[[Any], bool]] = {
            "temperature": lambda v: _is_number(v) and 0 <= v <= 2,
            "top_p": lambda v: _is_number(v) and 0 <= v <= 1,
            "max_tokens": lambda v: _is_int(v) and v > 0,
            "max_completion_tokens": lambda v: _is_int(v) and v > 0,
            "n": lambda v: _is_int(v) and v > 0,
            "seed": _is_int,
            "tools": lambda v: isinstance(v, list) and all(isinstance(t, dict) for t in v),
            "response_format": lambda v: isinstance(v, dict) and isinstance(v.get("type"), str),
            "stop": lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v)),
        }
        for key, ok in checks.items():
            if key in params and not ok(params[key]):
                raise ValueError(f"params.{key}: invalid value {params[key]!r}")
        return params

    @model_validator(mode="after")
    def _unique_variables(self) -> Version:
        names = [v.name for v in self.variables]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"variable(s) declared twice: {', '.join(dup)}")
        return self


LabelTarget = int | dict[int, float]


class PromptFile(_Strict):
    """The whole of ``prompts/<name>.yaml``. ``name`` defaults to the file name (without
    ``.yaml``) and must equal it when given."""

    name: str | None = None
    description: str = ""
    versions: list[Version] = Field(min_length=1)
    labels: dict[str, LabelTarget] = Field(default_factory=dict)
    # What `prompts promote` replaced, per label, oldest first (`prompts rollback` takes the last).
    previous: dict[str, list[LabelTarget]] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, LabelTarget]) -> dict[str, LabelTarget]:
        for label, target in labels.items():
            if not LABEL_RE.match(label):
                raise ValueError(f"label {label!r}: a label starts with a letter (letters, digits, _ . -); "
                                 "a bare number selects a version")
            if label in RESERVED_LABELS:
                raise ValueError(f"label {label!r} is reserved (it selects the highest version)")
            if isinstance(target, dict):
                if not target:
                    raise ValueError(f"label {label!r}: an experiment needs at least one arm")
                for version, weight in target.items():
                    if version < 1 or not math.isfinite(weight) or weight < 0:
                        raise ValueError(f"label {label!r}: arm {version}: weight must be a number >= 0")
                if not any(w > 0 for w in target.values()):
                    raise ValueError(f"label {label!r}: at least one arm needs a positive weight")
        return labels


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and (not isinstance(value, float) or math.isfinite(value)))


def type_matches(vtype: str, value: Any) -> bool:
    """Whether ``value`` (decoded JSON) has the declared JSON type ``vtype``."""
    if vtype == "any":
        return True
    if vtype == "string":
        return isinstance(value, str)
    if vtype == "integer":
        return _is_int(value)
    if vtype == "number":
        return _is_number(value)
    if vtype == "boolean":
        return isinstance(value, bool)
    if vtype == "array":
        return isinstance(value, list)
    if vtype == "object":
        return isinstance(value, dict)
    return False


def json_type_name(value: Any) -> str:
    """The JSON type name of a decoded value (for error messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
