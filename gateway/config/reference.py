"""The configuration reference and JSON Schema, generated from the pydantic models.

``markdown()`` walks ``GatewayConfig``: one section per nested model (its docstring), one row
per key (type, default, the field's ``description``). ``json_schema()`` is pydantic's schema of
the same models, for editors (yaml-language-server) and CI. Both are committed
(``docs/configuration.md``, ``config/gateway.schema.json``) and a test fails when they are
stale; regenerate both with ``python -m gateway.config.reference``.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from gateway.config import environment
from gateway.config.models import GatewayConfig

REFERENCE_PATH = Path("docs") / "configuration.md"
SCHEMA_PATH = Path("config") / "gateway.schema.json"
SCHEMA_TITLE = "llm-gateway config (gateway.yaml)"

_INTRO = """\
# Configuration reference

<!-- Generated from the models in gateway/config/ by `python -m gateway.config.reference`;
     edit their descriptions, not this file. -->

The gateway reads one YAML file. Every key is listed below with its type, its default and
what it does. Unknown keys and wrong types are errors that name their path (with the nearest
known key for a typo); `llm-gateway check-config [PATH]` reports every problem of a file in
one pass, and `serve` refuses a bad file with the same message (a running gateway keeps its
config when an edit is invalid). `${VAR}` and `${VAR:-default}` in any string are replaced
from the environment (an unset `${VAR}` is an error), so keys stay out of the file.

## Which file

Every command (`serve`, `check-config`, `query`, `drift`, `sessions`, `dataset`, `prompts`,
`chains`, `db`, `vllm launch`) takes the first of:

1. `--config PATH`
2. `$LLM_GATEWAY_CONFIG`
3. `./gateway.yaml`
4. `./config/gateway.yaml`
5. the embedded defaults (one `mock` backend serving `mock-gpt` and `mock-embed`)

and says on stderr which one it used, e.g. `config: config/gateway.yaml (found in the working
directory)`.

## Checking a file in your editor

`llm-gateway config schema` prints the JSON Schema of this format (the repository keeps a
copy in `config/gateway.schema.json`). Editors using the YAML language server (VS Code's
YAML extension, Neovim, Helix, JetBrains) validate and complete a file that starts with:

```yaml
# yaml-language-server: $schema=./gateway.schema.json
```

after `llm-gateway config schema -o gateway.schema.json` beside it (or point `$schema` at
any path or URL where you keep the file; `yaml.schemas` in the editor's settings does the
same for every `gateway.yaml`). The schema checks keys, types, allowed values and bounds;
references between sections (a target naming a backend) are checked by `check-config`.

## Environment variables

| variable | meaning |
|---|---|
"""


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``gateway.yaml``."""
    schema = GatewayConfig.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": SCHEMA_TITLE}


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


def markdown() -> str:
    """The reference as Markdown (``docs/configuration.md``)."""
    out = [_INTRO]
    out += [f"| `{name}` | {meaning} |\n" for name, meaning in environment.VARIABLES.items()]
    first: dict[type, str] = {}
    for path, model in _sections(GatewayConfig, ""):
        if model in first:  # the same model in a second place (a rule's targets, a model's retry)
            out.append(f"\n## `{path}`\n\nThe same keys as [`{first[model]}`](#{_anchor(first[model])}).\n")
        else:
            first[model] = path
            out.append(_section(path, model))
    return "".join(out)


def _anchor(path: str) -> str:
    """GitHub's anchor of a ``## `path` `` heading."""
    return re.sub(r"[^a-z0-9_ -]", "", path.lower()).replace(" ", "-")


def missing_descriptions() -> list[str]:
    """Keys without a ``description`` (the reference would show no meaning for them)."""
    return [f"{path}.{name}" if path else name for path, model in _sections(GatewayConfig, "")
            for name, field in model.model_fields.items() if not field.description]


def _sections(model: type[BaseModel], path: str):
    """``(path, model)`` for ``model`` and every model nested in it, depth first."""
    yield path, model
    for name, field in model.model_fields.items():
        sub, suffix = _nested(field.annotation)
        if sub is not None:
            yield from _sections(sub, f"{path}.{name}{suffix}" if path else f"{name}{suffix}")


def _nested(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The model inside a field's type, and the path suffix (``.<name>``, ``[]``)."""
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member, ""
        origin = typing.get_origin(member)
        if origin in (dict, list):
            inner = typing.get_args(member)[-1 if origin is dict else 0]
            sub, suffix = _nested(inner)
            if sub is not None:
                return sub, (".<name>" if origin is dict else "[]") + suffix
    return None, ""


def _members(annotation: Any) -> tuple:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return tuple(a for a in typing.get_args(annotation) if a is not type(None))
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    return (annotation,)


def _section(path: str, model: type[BaseModel]) -> str:
    title = f"`{path}`" if path else "Top level"
    doc = _md(inspect.cleandoc(model.__doc__ or ""))
    rows = []
    for name, field in model.model_fields.items():
        kind = _type(field)
        sub, suffix = _nested(field.annotation)
        if sub is not None:  # a nested section: point at it
            where = f"{path}.{name}{suffix}" if path else f"{name}{suffix}"
            kind = kind.replace("mapping (below)", f"mapping ([`{where}`](#{_anchor(where)}))")
        rows.append(f"| `{name}` | {kind} | {_default(field)} | {_cell(field.description or '')} |\n")
    return f"\n## {title}\n\n{doc}\n\n| key | type | default | meaning |\n|---|---|---|---|\n{''.join(rows)}"


def _md(text: str) -> str:
    """Docstring markup to Markdown: ``code`` → `code`."""
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def _cell(text: str) -> str:
    """A plain-text description as a table cell: no HTML, emphasis or column breaks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*") \
        .replace("|", "\\|")


# The constraint objects pydantic keeps in ``FieldInfo.metadata`` (annotated-types' Ge, Gt, …).
_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"), ("min_length", "length ≥"), ("max_length", "length ≤"))


def _type(field: FieldInfo) -> str:
    bounds = [f"{sign} {getattr(m, attr)}" for m in field.metadata for attr, sign in _BOUNDS
              if getattr(m, attr, None) is not None]
    return _type_name(field.annotation) + (f" ({', '.join(bounds)})" if bounds else "")


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return " \\| ".join(f"`{v}`" for v in typing.get_args(annotation))
    if origin is list:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        key, value = typing.get_args(annotation)
        return f"mapping of {_type_name(key)} to {_type_name(value)}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping (below)"
    return {str: "string", int: "integer", float: "number", bool: "boolean", Any: "any"}.get(
        annotation, getattr(annotation, "__name__", str(annotation)))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]  # no config default reads other fields
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return "its defaults"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (list, dict)) and not value:
        return "`[]`" if isinstance(value, list) else "`{}`"
    return f"`{json.dumps(value) if isinstance(value, (list, dict)) else value}`"


def write(root: Path = Path(".")) -> list[Path]:
    """Regenerate the committed reference and schema under ``root``; returns the paths."""
    (root / REFERENCE_PATH).write_text(markdown(), encoding="utf-8")
    (root / SCHEMA_PATH).write_text(json_schema_text(), encoding="utf-8")
    return [root / REFERENCE_PATH, root / SCHEMA_PATH]


if __name__ == "__main__":
    for written in write(Path(__file__).resolve().parents[2]):
        print(f"wrote {written}")
