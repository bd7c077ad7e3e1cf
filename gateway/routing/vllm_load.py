"""Strategy ``vllm-load``: send a request where it will start soonest, from the load each vLLM
server reports (``gateway.vllm`` scrapes ``/metrics``), optionally keeping requests that share
a prompt prefix on one server (prefix affinity) so its prefix cache pays off.

Score (lower is better), with ``routing.vllm_load.weights``::

    score = waiting·num_requests_waiting + running·num_requests_running
          + kv_cache·kv_cache_usage_perc (0..1) + inflight·new_inflight

``new_inflight`` is this gateway's requests in flight to the server now minus those in flight
when the snapshot was taken (those are already in the server's counts), never below 0: between
scrapes a burst spreads instead of landing on the server that looked idle. A target with no
snapshot, or one older than ``stale_after_ms`` (a hosted fallback, a scraper that has not run
yet), is scored ``inflight·in-flight`` alone. Order: lowest ``priority`` first (so a hosted
fallback can sit behind the fleet with ``priority: 1``), then score, ties broken at random.

Prefix affinity: the first ``prefix_chars`` characters of the prompt are hashed onto a
consistent-hash ring of the tier's targets; the targets are tried in ring order from that
point, except those whose score exceeds ``overload_factor × lowest score + overload_slack``
(bounded load), which go last by score. Each candidate's provenance carries its snapshot
(``load``) and, on the ring's first choice, ``affinity`` (``preferred`` or ``overloaded``).
"""

from __future__ import annotations

import bisect
import hashlib
import time
from collections.abc import Callable
from typing import Any

from gateway.config.vllm import VllmLoadSettings
from gateway.routing.plan import Candidate


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: the text ones
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def prefix_text(body: dict, limit: int) -> str:
    """The first ``limit`` characters of the request's prompt: chat messages as ``role␟text␞``
    in order (system prompt and injected prompt included), else the completion ``prompt`` (first
    of a list; token ids as text), else the embeddings ``input``. Empty when there is none."""
    messages = body.get("messages")
    if isinstance(messages, list):
        parts: list[str] = []
        size = 0
        for m in messages:
            if not isinstance(m, dict):
                continue
            piece = f"{m.get('role', '')}\x1f{_text_of(m.get('content'))}\x1e"
            parts.append(piece)
            size += len(piece)
            if size >= limit:
                break
        return "".join(parts)[:limit]
    prompt = body.get("prompt", body.get("input"))
    if isinstance(prompt, list) and prompt:
        prompt = prompt[0] if not isinstance(prompt[0], int) else prompt
    if isinstance(prompt, str):
        return prompt[:limit]
    if isinstance(prompt, list):  # token ids
        return ",".join(str(t) for t in prompt[:limit])[:limit]
    return ""


class HashRing:
    """Consistent hashing: ``virtual_nodes`` points per member on a 64-bit ring; ``walk(h)``
    lists every member in the order met going clockwise from ``h``."""

    __slots__ = ("_points", "_owners", "members")

    def __init__(self, members: tuple[str, ...], virtual_nodes: int):
        self.members = members
        pts = sorted((_hash64(f"{m}#{i}"), m) for m in members for i in range(virtual_nodes))
        self._points = [p for p, _ in pts]
        self._owners = [m for _, m in pts]

    def walk(self, h: int) -> list[str]:
        n = len(self._points)
        want = len(self.members)
        out: list[str] = []
        seen: set[str] = set()
        i = bisect.bisect_right(self._points, h)
        for k in range(n):
            owner = self._owners[(i + k) % n]
            if owner not in seen:
                seen.add(owner)
                out.append(owner)
                if len(out) == want:
                    break
        return out


class VllmLoad:
    """The ``vllm-load`` strategy (module docstring). ``health``: the ``HealthRegistry`` whose
    ``loads`` hold each backend's latest ``LoadSnapshot`` and whose target states count this
    process's requests in flight (summed per backend); its clock dates the snapshots."""

    name = "vllm-load"
    wants_body = True  # the router passes the request body (prefix affinity)

    def __init__(self, settings: VllmLoadSettings | None = None, health=None, clock: Callable[[], float] | None = None):
        self.settings = settings or VllmLoadSettings()
        self._health = health
        self._clock = clock or (health.clock if health is not None else time.monotonic)
        self._rings: dict[tuple[str, ...], HashRing] = {}

    # -- scoring ---------------------------------------------------------------------------
    def score_all(self, candidates: list[Candidate]) -> None:
        """Set every candidate's ``score`` and its ``detail`` (the snapshot it was scored on)."""
        w = self.settings.weights
        health = self._health
        loads = health.loads if health is not None else {}
        totals: dict[str, int] = {}
        if health is not None and loads:
            for st in health.all():
                totals[st.backend] = totals.get(st.backend, 0) + st.inflight
        now = self._clock()
        stale = self.settings.stale_after_ms / 1000
        for c in candidates:
            backend = c.state.backend
            current = totals.get(backend, c.state.inflight)
            snap = loads.get(backend)
            if snap is not None and now - snap.t <= stale:
                new = max(0, current - snap.inflight_at_scrape)
                score = (w.waiting * snap.waiting + w.running * snap.running + w.kv_cache * snap.kv_cache
                         + w.inflight * new)
                c.detail = {"load": {"waiting": snap.waiting, "running": snap.running,
                                     "kv_cache": round(snap.kv_cache, 4), "inflight": new,
                                     "age_ms": round((now - snap.t) * 1000)}}
            else:
                score = w.inflight * current
                c.detail = {"load": {"inflight": current}}
            c.score = round(score, 4)

    # -- ranking ---------------------------------------------------------------------------
    def rank(self, candidates: list[Candidate], stream: bool, rng, body: dict | None = None) -> list[Candidate]:
        self.score_all(candidates)
        keyed = sorted(((c.target.priority, c.score, rng.random()), c) for c in candidates)
        ordered = [c for _, c in keyed]
        aff = self.settings.prefix_affinity
        if not aff.enabled or body is None or len(ordered) < 2:
            return ordered
        text = prefix_text(body, aff.prefix_chars)
        if not text:
            return ordered
        h = _hash64(text)
        out: list[Candidate] = []
        tier: list[Candidate] = []
        for c in ordered + [None]:  # group by priority (ordered is sorted by it)
            if tier and (c is None or c.target.priority != tier[0].target.priority):
                out.extend(self._affine(tier, h) if len(tier) > 1 else tier)
                tier = []
            if c is not None:
                tier.append(c)
        return out

    def _ring(self, keys: tuple[str, ...]) -> HashRing:
        ring = self._rings.get(keys)
        if ring is None:
            if len(self._rings) > 256:
                self._rings.clear()
            ring = self._rings[keys] = HashRing(keys, self.settings.prefix_affinity.virtual_nodes)
        return ring

    def _affine(self, tier: list[Candidate], h: int) -> list[Candidate]:
        """Ring order from ``h`` among the targets within the load bound; the rest after."""
        aff = self.settings.prefix_affinity
        by_key = {c.state.key: c for c in tier}
        ring_order = [by_key[k] for k in self._ring(tuple(sorted(by_key))).walk(h)]
        bound = aff.overload_factor * min(c.score for c in tier) + aff.overload_slack
        within = [c for c in ring_order if c.score <= bound]
        over = [c for c in tier if c.score > bound]  # tier is already in score order
        preferred = ring_order[0]
        preferred.detail = {**(preferred.detail or {}), "affinity": "preferred" if within and within[0] is preferred
                            else "overloaded"}
        return within + over
