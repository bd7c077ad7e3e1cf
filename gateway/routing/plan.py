"""``Candidate`` and ``RoutePlan``: the outcome of a routing decision, with its provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.config.models import FailureClass, RetryPolicy, Target
from gateway.core.upstream import Upstream
from gateway.routing.health import TargetState


@dataclass(slots=True)
class Candidate:
    """One target considered for a request: ``score`` is what the strategy ranked by;
    ``skipped`` says why it was not usable (``circuit_open``, ``context_window``); ``detail``:
    more of what the strategy saw (``vllm-load``: the server's load snapshot, affinity)."""

    target: Target
    client: Upstream
    upstream_model: str
    state: TargetState
    score: Any = None
    skipped: str | None = None
    detail: dict[str, Any] | None = None

    def provenance(self) -> dict[str, Any]:
        out = {"target": self.state.key, "score": self.score, "skipped": self.skipped}
        if self.detail:
            out.update(self.detail)
        return out


@dataclass(slots=True)
class RoutePlan:
    """Targets to try in order, the rule and strategy that chose them, and the retry policy."""

    public_model: str
    rule: str
    strategy: str
    ordered: list[Candidate]
    considered: list[Candidate]
    retry: RetryPolicy
    fallback_on: frozenset[FailureClass]
    extra: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> list[dict[str, Any]]:
        """Every candidate considered, in try order then skipped ones."""
        return [c.provenance() for c in self.considered]
