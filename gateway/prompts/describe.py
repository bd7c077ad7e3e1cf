"""Plain-data views of the registry for ``GET /admin/prompts`` and the CLI (JSON-ready)."""

from __future__ import annotations

from typing import Any

from gateway.prompts.lock import format_ts
from gateway.prompts.registry import CompiledVersion, Prompt, PromptRegistry


def describe_variable(var) -> dict[str, Any]:
    """A declared variable: name, type, required, and default / description when set."""
    out: dict[str, Any] = {"name": var.name, "type": var.type, "required": var.is_required}
    if var.default is not None:
        out["default"] = var.default
    if var.description:
        out["description"] = var.description
    return out


def describe_version(cv: CompiledVersion, templates: bool = True) -> dict[str, Any]:
    """One version: number, hash, mode, note, first seen, variables, params (and templates)."""
    out: dict[str, Any] = {
        "version": cv.version, "content_hash": cv.content_hash, "mode": cv.mode, "note": cv.spec.note,
        "first_seen": format_ts(cv.first_seen),
        "variables": [describe_variable(v) for v in cv.spec.variables],
        "params": cv.params,
    }
    if templates:
        out["messages"] = cv.source_messages()
    return out


def describe_prompt(prompt: Prompt, templates: bool = True) -> dict[str, Any]:
    """One prompt: description, file, labels (version or ``{version: weight}``) and versions."""
    return {
        "name": prompt.name, "description": prompt.description, "source": prompt.source,
        "latest": prompt.latest,
        "labels": {name: label.as_config() for name, label in sorted(prompt.labels.items())},
        "versions": [describe_version(prompt.versions[v], templates) for v in sorted(prompt.versions)],
    }


def describe_registry(registry: PromptRegistry | None, config: Any = None) -> dict[str, Any]:
    """Every prompt, plus the public models that name one."""
    registry = registry or PromptRegistry()
    models = {}
    if config is not None:
        models = {name: m.prompt for name, m in config.models.items() if getattr(m, "prompt", None)}
    return {
        "directory": registry.directory, "lock_file": registry.lock_path,
        "prompts": [describe_prompt(registry.prompts[n]) for n in sorted(registry.prompts)],
        "models": models,
    }
