"""Pydantic model of the ``adapters:`` section of ``gateway.yaml``: LoRA adapters served by the
vLLM servers of their base model (docs/vllm.md, "Adapters: canary and promote").

An adapter is loaded on every ``type: vllm`` backend that serves its base model, under the
adapter's name: a target ``{backend: vllm-a, model: <adapter name>}`` serves it.
``llm-gateway adapters promote NAME VERSION`` sets ``version`` (and remembers the one before in
``previous``); the running gateway reloads the config and loads the new version's path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Adapter(BaseModel):
    """A LoRA adapter: the versions it has (each a path or URI the vLLM servers can read), the
    version served, and the base model it applies to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_model: str = Field(description=(
        "the base model as the vLLM servers serve it (a target's model, or launch.served_model_name)"))
    versions: dict[int, str] = Field(description=(
        "version number → path or URI of the adapter (a folder with adapter_config.json) as the servers see it"))
    version: int = Field(description="the version served under the adapter's name")
    previous: list[int] = Field(default_factory=list, description=(
        "versions served before, oldest first: `adapters rollback` goes back to the last one"))
    max_rank: int = Field(16, ge=1, description=(
        "managed servers (launch:) start with --max-lora-rank at least this (the adapter's LoRA rank)"))

    @property
    def path(self) -> str:
        return self.versions[self.version]


def vllm_base_models(backend: Any) -> set[str]:
    """Names a ``launch:`` block makes its server serve the base model under."""
    launch = getattr(backend, "launch", None)
    if launch is None:
        return set()
    return {launch.served_model_name or launch.model}


def adapters_of_backends(cfg: Any) -> dict[str, dict[str, Adapter]]:
    """Per ``type: vllm`` backend, the adapters it must serve: those that one of its targets
    names, and those whose base model one of its targets (or its ``launch:`` block) names."""
    served: dict[str, set[str]] = {}
    for public, m in cfg.models.items():
        for t in m.targets:
            served.setdefault(t.backend, set()).add(t.model or public)
    for r in cfg.routes:
        for t in r.targets or ():
            served.setdefault(t.backend, set()).add(t.model or r.model or "")
    out: dict[str, dict[str, Adapter]] = {}
    for name, b in cfg.backends.items():
        if b.type != "vllm":
            continue
        models = served.get(name, set()) | vllm_base_models(b)
        wanted = {a_name: a for a_name, a in cfg.adapters.items() if a.base_model in models or a_name in models}
        if wanted:
            out[name] = wanted
    return out


def adapter_problems(cfg: Any) -> list[str]:
    """Path-qualified errors of ``adapters:`` (``GatewayConfig``'s validator calls it)."""
    problems: list[str] = []
    adapters: Mapping[str, Adapter] = cfg.adapters
    if not adapters:
        return problems
    by_backend = adapters_of_backends(cfg)
    for name, a in adapters.items():
        if a.version not in a.versions:
            problems.append(f"adapters.{name}.version: {a.version} is not one of versions "
                            f"({', '.join(map(str, sorted(a.versions))) or 'none'})")
        for v in a.previous:
            if v not in a.versions:
                problems.append(f"adapters.{name}.previous: {v} is not one of versions")
        if not any(name in wanted for wanted in by_backend.values()):
            problems.append(f'adapters.{name}: no type: vllm backend serves it or its base model "{a.base_model}" '
                            "(a target of either, or a launch: block serving the base model)")
        if any(name == other.base_model for other in adapters.values()):
            problems.append(f"adapters.{name}: an adapter cannot be another adapter's base model")
    for public, m in cfg.models.items():
        for i, t in enumerate(m.targets):
            if t.model in adapters and t.model not in by_backend.get(t.backend, {}):
                problems.append(f'models.{public}.targets[{i}]: adapter "{t.model}" needs a type: vllm backend, '
                                f'not "{t.backend}"')
    return problems


__all__ = ["Adapter", "adapter_problems", "adapters_of_backends"]
