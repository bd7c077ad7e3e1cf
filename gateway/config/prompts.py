"""Pydantic model of the ``prompts:`` section of ``gateway.yaml`` (prompt files: see
``gateway/prompts/`` and docs/prompts.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PromptSettings(BaseModel):
    """Where versioned prompt files live (docs/prompts.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: str | None = Field(None, description=(
        "folder of <name>.yaml prompt files, relative to the config file (default: prompts beside it)"))
    lock_file: str | None = Field(None, description=(
        "the record of each version's content (default <dir>/versions.lock), relative to the config file"))


__all__ = ["PromptSettings"]
