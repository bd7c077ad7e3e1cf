"""Routing strategies: order a model's candidate targets for one request.

A strategy is any object with a ``name`` and ``rank(candidates, stream, rng) -> list``
that returns the usable candidates in the order to try them, setting each one's ``score``
(what the decision was based on, logged as provenance). Register new ones in ``STRATEGIES``
(``vllm-load`` lives in ``gateway.routing.vllm_load``; a strategy with ``wants_body = True``
also gets the request body as ``rank(..., body=)``).
"""

from __future__ import annotations

import hashlib
import random
from typing import Protocol

from gateway.routing.plan import Candidate


class Strategy(Protocol):
    name: str

    def rank(self, candidates: list[Candidate], stream: bool, rng: random.Random) -> list[Candidate]:
        """Return ``candidates`` in try order with ``score`` set."""


class Weighted:
    """Random by weight: the first target is drawn with probability weight/sum; the rest follow
    in weighted-random order too, so fallbacks also respect the weights (Efraimidis–Spirakis).

    ``sticky_key`` (a model with ``sticky: true``: the caller's experiment key, salted with the
    public model): each target's draw is a hash of the key and the target instead of the rng,
    so a caller keeps its target while the weights stay, whichever other targets are skipped;
    raising a target's weight only moves callers onto it."""

    name = "weighted"

    def rank(self, candidates, stream, rng, sticky_key: str | None = None):
        total = sum(c.target.weight for c in candidates) or 1.0
        keyed = []
        for c in candidates:
            c.score = round(c.target.weight / total, 4)
            w = c.target.weight
            u = rng.random() if sticky_key is None else _point(sticky_key, c.state.key)
            keyed.append((u ** (1.0 / w) if w > 0 else -1.0, c))
        keyed.sort(key=lambda kv: kv[0], reverse=True)
        return [c for _, c in keyed]


def _point(key: str, target: str) -> float:
    """A point in (0, 1) fixed by the caller's key and the target (BLAKE2b, 64 bits)."""
    digest = hashlib.blake2b(f"{key}\0{target}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / float(1 << 64)


class Priority:
    """Ordered fallback list: lowest ``priority`` first, ties in config order."""

    name = "priority"

    def rank(self, candidates, stream, rng):
        for c in candidates:
            c.score = c.target.priority
        if len(candidates) == 1:  # a model with one target: nothing to order
            return list(candidates)
        return sorted(candidates, key=lambda c: c.target.priority)


class LeastLatency:
    """Lowest EWMA of TTFT (streams) or total latency (otherwise). Targets without samples go
    first (they need one); with probability ``exploration`` the order is shuffled so slower
    targets keep being measured."""

    name = "least-latency"

    def __init__(self, exploration: float = 0.05):
        self.exploration = exploration

    def rank(self, candidates, stream, rng):
        for c in candidates:
            st = c.state
            value = (st.ewma_ttft_ms if stream and st.ewma_ttft_ms is not None else st.ewma_latency_ms)
            c.score = None if value is None else round(value, 3)
        if self.exploration and rng.random() < self.exploration:
            out = list(candidates)
            rng.shuffle(out)
            return out
        return sorted(candidates, key=lambda c: -1.0 if c.score is None else c.score)


class LeastBusy:
    """Fewest requests in flight from this gateway; ties in config order."""

    name = "least-busy"

    def rank(self, candidates, stream, rng):
        for c in candidates:
            c.score = c.state.inflight
        return sorted(candidates, key=lambda c: c.state.inflight)


def build_strategies(exploration: float, vllm_load=None, health=None) -> dict[str, Strategy]:
    """The strategy table for one config snapshot. ``vllm_load``: ``routing.vllm_load``
    settings; ``health``: the ``HealthRegistry`` (its vLLM load snapshots and in-flight counts)."""
    from gateway.routing.vllm_load import VllmLoad

    return {s.name: s for s in (Weighted(), Priority(), LeastLatency(exploration), LeastBusy(),
                                VllmLoad(vllm_load, health))}
