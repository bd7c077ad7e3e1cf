"""What every scorer is: a ``name`` (the ``scorer`` column, what gates name) and an async
``score(item, output) -> Verdict``."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.evals.dataset import Item


class ScorerError(ValueError):
    """A scorer cannot be built from its spec (unknown, bad argument, missing model)."""


@dataclass(frozen=True)
class Verdict:
    """A score (``None``: the scorer does not apply to this item, or it failed: ``error``) and
    why."""

    score: float | None
    reason: str = ""
    error: str = ""


class Scorer:
    """Base of every scorer. ``name``: as it appears in reports and gates."""

    name: str = ""

    async def score(self, item: Item, output: str) -> Verdict:
        raise NotImplementedError


__all__ = ["Scorer", "ScorerError", "Verdict"]
