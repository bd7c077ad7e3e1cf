"""Pydantic model of the ``chains:`` section of ``gateway.yaml`` (chain files: see
``gateway/chains/`` and docs/llmops.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ChainSettings(BaseModel):
    """Where chain files live and the limits every chain runs under.

    ``dir``: folder of ``<name>.yaml`` chain files, relative to the config file (default:
    ``chains`` beside it; for a config given as a string, off unless set). ``max_steps``: the
    most steps any chain may have (a chain's own ``max_steps`` may only lower it).
    ``deadline_s``: the default total deadline of a chain run (a chain's ``deadline_s`` overrides it).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: str | None = None
    max_steps: int = Field(16, ge=1, le=256)
    deadline_s: float = Field(120.0, gt=0)


__all__ = ["ChainSettings"]
