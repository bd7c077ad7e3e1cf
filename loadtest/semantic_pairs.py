"""Semantic cache quality: hit rate and false-hit rate against the distance threshold.

``python -m loadtest semantic-threshold --url http://127.0.0.1:9400/v1 --model all-MiniLM-L6-v2``

Every pair of ``loadtest/data/paraphrases.jsonl`` (``kind`` ``same``: two wordings of one
question; ``different``: two questions on one topic, worded alike, that need different answers,
the hard negatives) is embedded through an OpenAI-compatible ``/v1/embeddings`` endpoint, and
the cosine distance of each pair is computed here. For each threshold ``t`` the semantic cache
would serve a stored answer to the other question when ``distance <= t``: the hit rate is the
share of same-meaning pairs within ``t``, the false-hit rate the share of different-meaning
pairs within ``t`` (a wrong answer served). ``--mock`` adds the in-process mock backend's
embeddings (``gateway.providers.mock``) for contrast: what the tests' vectors do, not a model.

The recommended threshold is the largest one (on a 0.01 grid) whose false-hit rate stays at or
below ``--max-false-hit`` (default 5% of these hard negatives): a wrong answer costs more than a
miss. The same is listed for false-hit budgets of 1%, 2%, 5% and 10%.
"""

from __future__ import annotations

import json
import math
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 9))  # 0.05 … 0.40
GRID = tuple(round(0.01 * i, 2) for i in range(1, 81))  # 0.01 … 0.80, for the recommendation
BUDGETS = (0.01, 0.02, 0.05, 0.10)  # false-hit rates to list the largest threshold for
MOCK_MODEL = "mock-embed"


@dataclass(frozen=True)
class Pair:
    id: int
    kind: str  # "same" | "different"
    topic: str
    a: str
    b: str


def load_pairs() -> list[Pair]:
    """The paraphrase set shipped with the bench (package data)."""
    text = resources.files("loadtest").joinpath("data/paraphrases.jsonl").read_text(encoding="utf-8")
    return [Pair(**json.loads(line)) for line in text.splitlines() if line.strip()]


def embed(url: str, model: str, texts: Sequence[str], api_key: str = "sk-bench", batch: int = 64,
          dimensions: int | None = None) -> list[list[float]]:
    """Vectors of ``texts`` from ``{url}/embeddings`` (an OpenAI-compatible base URL, ``…/v1``)."""
    out: list[list[float]] = []
    for start in range(0, len(texts), batch):
        body: dict[str, Any] = {"model": model, "input": list(texts[start:start + batch])}
        if dimensions:
            body["dimensions"] = dimensions
        req = urllib.request.Request(f"{url.rstrip('/')}/embeddings", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {api_key}"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            data = json.loads(resp.read())["data"]
        out.extend(item["embedding"] for item in sorted(data, key=lambda d: d["index"]))
    return out


def cosine_distance(u: Sequence[float], v: Sequence[float]) -> float:
    """``1 - cos(u, v)``, as ClickHouse's ``cosineDistance`` computes it (no normalisation assumed)."""
    dot = sum(x * y for x, y in zip(u, v, strict=True))
    nu = math.sqrt(sum(x * x for x in u))
    nv = math.sqrt(sum(y * y for y in v))
    return 1.0 - dot / (nu * nv) if nu and nv else 1.0


def pair_distances(pairs: Sequence[Pair], vectors: dict[str, list[float]]) -> list[float]:
    return [cosine_distance(vectors[p.a], vectors[p.b]) for p in pairs]


def rates(pairs: Sequence[Pair], distances: Sequence[float], threshold: float) -> dict[str, float]:
    """``hit_rate`` (same pairs within ``threshold``) and ``false_hit_rate`` (different pairs within)."""
    same = [d for p, d in zip(pairs, distances, strict=True) if p.kind == "same"]
    diff = [d for p, d in zip(pairs, distances, strict=True) if p.kind == "different"]
    return {"threshold": threshold,
            "hit_rate": sum(d <= threshold for d in same) / len(same),
            "false_hit_rate": sum(d <= threshold for d in diff) / len(diff)}


def _quantiles(values: Sequence[float]) -> dict[str, float]:
    s = sorted(values)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    return {"min": s[0], "p10": pick(0.1), "p25": pick(0.25), "p50": pick(0.5), "p75": pick(0.75),
            "p90": pick(0.9), "max": s[-1]}


def largest_within(pairs: Sequence[Pair], distances: Sequence[float], max_false_hit: float) -> float | None:
    """The largest threshold of ``GRID`` whose false-hit rate is at most ``max_false_hit``."""
    ok = [t for t in GRID if rates(pairs, distances, t)["false_hit_rate"] <= max_false_hit]
    return max(ok) if ok else None


def analyse(pairs: Sequence[Pair], distances: Sequence[float], max_false_hit: float = 0.05) -> dict[str, Any]:
    """The sweep over ``THRESHOLDS``, the distance distributions, the recommended threshold and the
    closest different-meaning pairs (the false hits a loose threshold would serve)."""
    sweep = [rates(pairs, distances, t) for t in THRESHOLDS]
    recommended = largest_within(pairs, distances, max_false_hit)
    budgets = []
    for budget in BUDGETS:
        t = largest_within(pairs, distances, budget)
        at = rates(pairs, distances, t) if t is not None else {"threshold": None}
        budgets.append({"max_false_hit": budget, **at})
    by_kind = {k: [d for p, d in zip(pairs, distances, strict=True) if p.kind == k] for k in ("same", "different")}
    ranked = sorted(zip(pairs, distances, strict=True), key=lambda pd: pd[1])
    hardest = [{"a": p.a, "b": p.b, "distance": round(d, 4)} for p, d in ranked if p.kind == "different"][:8]
    farthest = [{"a": p.a, "b": p.b, "distance": round(d, 4)} for p, d in reversed(ranked) if p.kind == "same"][:5]
    topics = sorted({p.topic for p in pairs})
    per_topic = {}
    if recommended is not None:
        for topic in topics:
            sub = [(p, d) for p, d in zip(pairs, distances, strict=True) if p.topic == topic]
            per_topic[topic] = rates([p for p, _ in sub], [d for _, d in sub], recommended)
    return {"pairs": {k: len(v) for k, v in by_kind.items()},
            "distance": {k: _quantiles(v) for k, v in by_kind.items()},
            "sweep": sweep, "budgets": budgets, "max_false_hit": max_false_hit, "recommended": recommended,
            "at_recommended": rates(pairs, distances, recommended) if recommended is not None else None,
            "per_topic_at_recommended": per_topic, "closest_different": hardest, "farthest_same": farthest}


def measure(url: str, model: str, api_key: str = "sk-bench", max_false_hit: float = 0.05,
            dimensions: int | None = None) -> dict[str, Any]:
    """Embed every text of the paraphrase set once through ``url`` and analyse the pairs."""
    pairs = load_pairs()
    texts = sorted({t for p in pairs for t in (p.a, p.b)})
    vectors = dict(zip(texts, embed(url, model, texts, api_key, dimensions=dimensions), strict=True))
    out = analyse(pairs, pair_distances(pairs, vectors), max_false_hit)
    out.update(url=url, model=model, dims=len(next(iter(vectors.values()))))
    return out


def measure_mock(dims: int = 384, max_false_hit: float = 0.05) -> dict[str, Any]:
    """The same through the mock backend's ``/v1/embeddings``, served in-process on a loopback port."""
    from gateway.config import MockSettings
    from gateway.providers.mock.backend import build_mock_app
    from gateway.proxy.server import BackgroundServer

    with BackgroundServer(build_mock_app(MockSettings(embedding_dims=dims))) as server:
        out = measure(f"http://127.0.0.1:{server.port}/v1", MOCK_MODEL, max_false_hit=max_false_hit, dimensions=dims)
    out["url"] = "mock (in-process)"
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    """A Markdown table: one row per threshold, hit / false-hit rate per embedding source."""
    names = list(results)
    head = "| max_distance | " + " | ".join(f"{n} hit | {n} false hit" for n in names) + " |"
    lines = [head, "|---:|" + "---:|---:|" * len(names)]
    for i, t in enumerate(THRESHOLDS):
        cells = []
        for n in names:
            r = results[n]["sweep"][i]
            cells += [f"{r['hit_rate']:.1%}", f"{r['false_hit_rate']:.1%}"]
        lines.append(f"| {t:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "| false-hit budget | " + " | ".join(f"{n} largest max_distance | hit rate" for n in names) + " |",
              "|---:|" + "---:|---:|" * len(names)]
    for i, budget in enumerate(BUDGETS):
        cells = []
        for n in names:
            b = results[n]["budgets"][i]
            cells += ["—", "—"] if b["threshold"] is None else [f"{b['threshold']:.2f}", f"{b['hit_rate']:.1%}"]
        lines.append(f"| {budget:.0%} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
