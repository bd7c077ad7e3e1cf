"""Pydantic model of the ``bias:`` section of ``gateway.yaml`` (bias monitoring: see
``gateway/bias/`` and docs/llmops.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


def re2_problem(pattern: str) -> str | None:
    """Why ClickHouse's regex engine, RE2, would refuse ``pattern`` (``None`` when it compiles):
    asked of RE2 itself (google-re2), so a pattern refused here is one the store would refuse,
    and the other way round (lookarounds, backreferences, repetitions over 1000, ``\\Z`` …)."""
    import re2  # google-re2: loaded only where a pattern is checked

    options = re2.Options()
    options.log_errors = False  # the message is returned, not printed to stderr
    try:
        re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
    return None


class BiasSettings(BaseModel):
    """Defaults of ``llm-gateway bias`` and the dashboard's Bias panel (docs/llmops.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    refusal_pattern: str | None = Field(None, max_length=1000, description=(
        "RE2 regular expression over the logged response body (telemetry.bodies.response) that marks an "
        "answer as a refusal, besides finish reason content_filter and a refusal field; --refusal-pattern "
        "overrides it"))

    @field_validator("refusal_pattern")
    @classmethod
    def _re2(cls, value: str | None) -> str | None:
        problem = re2_problem(value) if value else None
        if problem:
            raise ValueError(f"not a valid RE2 regular expression: {problem}")
        return value


__all__ = ["BiasSettings", "re2_problem"]
