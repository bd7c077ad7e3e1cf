"""Pydantic model of the ``prompts:`` section of ``gateway.yaml`` (prompt files: see
``gateway/prompts/`` and docs/prompts.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PromptSettings(BaseModel):
    """Where prompt files live.

    ``dir``: folder of ``<name>.yaml`` prompt files, relative to the config file (default:
    ``prompts`` beside it; for a config given as a string, relative to the working directory
    and off unless set). ``lock_file``: the immutability record (default
    ``<dir>/versions.lock``), relative to the config file too.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: str | None = None
    lock_file: str | None = None


__all__ = ["PromptSettings"]
