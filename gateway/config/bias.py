"""Pydantic model of the ``bias:`` section of ``gateway.yaml`` (bias monitoring: see
``gateway/bias/`` and docs/llmops.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BiasSettings(BaseModel):
    """Defaults of ``llm-gateway bias`` and the dashboard's Bias panel (docs/llmops.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    refusal_pattern: str | None = Field(None, max_length=1000, description=(
        "RE2 regular expression over the logged response body (telemetry.bodies.response) that marks an "
        "answer as a refusal, besides finish reason content_filter and a refusal field; --refusal-pattern "
        "overrides it"))


__all__ = ["BiasSettings"]
