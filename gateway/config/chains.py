"""Pydantic model of the ``chains:`` section of ``gateway.yaml`` (chain files: see
``gateway/chains/`` and docs/llmops.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ChainSettings(BaseModel):
    """Where chain files live and the limits every chain runs under (docs/llmops.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: str | None = Field(None, description=(
        "folder of <name>.yaml chain files, relative to the config file (default: chains beside it)"))
    max_steps: int = Field(16, ge=1, le=256, description=(
        "the most steps any chain may have (a chain's own max_steps may only lower it)"))
    deadline_s: float = Field(120.0, gt=0, description=(
        "default total deadline of a chain run (a chain's deadline_s overrides it)"))


__all__ = ["ChainSettings"]
