"""vLLM's Prometheus ``/metrics`` → a ``LoadSnapshot`` (pure: no I/O).

vLLM exposes ~50 KB of metrics; parsing all of it with ``prometheus_client`` takes ~18 ms of
CPU on the event loop, so the text is first cut down to the few families routing reads
(a line filter, ~0.2 ms), and only those are parsed. Values are summed over every sample of a
family (a data-parallel server reports one per ``engine``). Names checked against vLLM 0.32
(CPU build); the older V0 names (``gpu_cache_usage_perc``, ``gpu_prefix_cache_*``) are
accepted too.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_CACHE = "vllm:kv_cache_usage_perc"
PREFIX_HITS = "vllm:prefix_cache_hits"        # counter family; the sample is ..._total
PREFIX_QUERIES = "vllm:prefix_cache_queries"

# family name as parsed → field; first match wins, so current names come first.
_FAMILIES = {
    RUNNING: "running",
    WAITING: "waiting",
    KV_CACHE: "kv_cache",
    "vllm:gpu_cache_usage_perc": "kv_cache",
    PREFIX_HITS: "prefix_hits",
    "vllm:gpu_prefix_cache_hits": "prefix_hits",
    PREFIX_QUERIES: "prefix_queries",
    "vllm:gpu_prefix_cache_queries": "prefix_queries",
}
# Line prefixes kept by the pre-filter: samples and their # HELP / # TYPE lines. The trailing
# character keeps e.g. vllm:num_requests_waiting_by_reason out.
_KEEP = tuple(f"{name}{end}" for name in _FAMILIES for end in ("{", " ", "_total{", "_total "))
_KEEP_META = tuple(f"# {kind} {name}{end}" for name in _FAMILIES for kind in ("HELP", "TYPE")
                   for end in (" ", "_total "))


class MetricsError(ValueError):
    """The text is not vLLM metrics (no ``vllm:num_requests_running``/``waiting``)."""


@dataclass(slots=True)
class LoadSnapshot:
    """One scrape of a vLLM server.

    ``t``: when it was taken (the health registry's clock, seconds). ``running`` / ``waiting``:
    requests in the batch / queued. ``kv_cache``: KV-cache use, 0..1. ``prefix_hits`` /
    ``prefix_queries``: the prefix-cache counters (tokens, cumulative; None if not reported);
    ``prefix_hit_rate``: hits / queries since the previous scrape (None without new queries).
    ``inflight_at_scrape``: this gateway's requests in flight to the server when it was taken
    (they are already counted in running/waiting).
    """

    t: float
    running: float
    waiting: float
    kv_cache: float
    prefix_hits: float | None = None
    prefix_queries: float | None = None
    prefix_hit_rate: float | None = None
    inflight_at_scrape: int = 0

    def as_dict(self, now: float | None = None) -> dict:
        out = {"running": self.running, "waiting": self.waiting, "kv_cache": round(self.kv_cache, 4),
               "prefix_hits": self.prefix_hits, "prefix_queries": self.prefix_queries,
               "prefix_hit_rate": None if self.prefix_hit_rate is None else round(self.prefix_hit_rate, 4),
               "inflight_at_scrape": self.inflight_at_scrape}
        if now is not None:
            out["age_ms"] = round((now - self.t) * 1000, 1)
        return out


def relevant_lines(text: str) -> str:
    """The lines of the families routing reads (samples and their HELP/TYPE lines)."""
    keep = [line for line in text.splitlines()
            if line.startswith(_KEEP) or (line.startswith("# ") and line.startswith(_KEEP_META))]
    return "\n".join(keep) + "\n"


def parse_metrics(text: str, t: float, previous: LoadSnapshot | None = None, inflight: int = 0) -> LoadSnapshot:
    """Parse vLLM's metrics text into a snapshot taken at ``t``. ``previous`` (the last snapshot
    of the same server) gives the prefix hit rate since then. Raises ``MetricsError`` when the
    text lacks the request gauges, ``ValueError`` when it is not Prometheus text."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(relevant_lines(text)):
        # Without a TYPE line a counter's family keeps its _total suffix.
        field = _FAMILIES.get(family.name) or _FAMILIES.get(family.name.removesuffix("_total"))
        if field is None or field in values:
            continue
        total = 0.0
        seen = False
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            total += sample.value
            seen = True
        if seen:
            values[field] = total
    if "running" not in values or "waiting" not in values:
        raise MetricsError(f"no {RUNNING} / {WAITING} in the metrics")
    hits, queries = values.get("prefix_hits"), values.get("prefix_queries")
    rate = None
    if previous is not None and previous.prefix_hits is not None and previous.prefix_queries is not None \
            and hits is not None and queries is not None:
        dq = queries - previous.prefix_queries
        if dq > 0:
            rate = max(0.0, min(1.0, (hits - previous.prefix_hits) / dq))
    return LoadSnapshot(t, values["running"], values["waiting"], values.get("kv_cache", 0.0), hits, queries,
                        rate, inflight)
