"""Pydantic model of the ``evaluations:`` section of ``gateway.yaml`` (``llm-gateway eval``:
see ``gateway/evals/`` and docs/llmops.md).

The gate grammar lives here so a config with a malformed gate is refused when it loads;
``gateway.evals.gates`` parses with the same pattern.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

# ``<scorer> <op> <number>``: ``judge>=0.8``, ``exact == 1``, ``latency_p95_ms<2000``.
GATE_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.:-]*)\s*(>=|<=|==|>|<)\s*"
                     r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def check_gate(text: str) -> str:
    """``text`` when it is a gate; raises ``ValueError`` naming the expected form."""
    if not GATE_RE.match(text):
        raise ValueError(f"bad gate {text!r}: expected <scorer><op><number> with op one of >=, >, <=, <, == "
                         "(e.g. judge>=0.8)")
    return text


class EvaluationSettings(BaseModel):
    """Models the scorers call, and the gates promotions check (docs/llmops.md, "Evaluations")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gates: dict[str, list[str]] = Field(default_factory=dict, description=(
        "per candidate (a public model name, prompt@version or an adapter name): gates such as "
        "\"judge>=0.8\" that its newest finished evaluation run must pass"))
    judge_model: str | None = Field(None, description=(
        "public model the judge scorer calls through the gateway (eval run --judge-model overrides it)"))
    judge_prompt: str = Field("eval-judge", description=(
        "the judge's rubric: a prompt of the registry (name, name@label or name@version)"))
    embedding_model: str | None = Field(None, description=(
        "public embeddings model the embedding scorer calls (eval run --embedding-model overrides it)"))
    concurrency: int = Field(4, ge=1, le=256, description="candidate calls in flight at once during eval run")

    @field_validator("gates")
    @classmethod
    def _gates(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for gates in value.values():
            for gate in gates:
                check_gate(gate)
        return value


__all__ = ["GATE_RE", "EvaluationSettings", "check_gate"]
