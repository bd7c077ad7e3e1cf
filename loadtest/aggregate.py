"""Merging the bench's rounds into one table: per phase and target, throughput, merged latency
histograms, CPU per request, RSS, and the latency added over the reference target."""

from __future__ import annotations

from loadtest import stats


def aggregate(runs: list[dict], reference: str) -> dict[str, dict[str, dict]]:
    """``{phase: {target: cell}}`` merging rounds: throughput = Σok/Σwindow, merged histograms,
    CPU = Σcpu/Σok, RSS = max; then added latency against ``reference`` per percentile."""
    cells: dict[str, dict[str, dict]] = {}
    for run in runs:
        res = run["result"]
        cell = cells.setdefault(run["phase"], {}).setdefault(run["target"], {
            "ok": 0, "window_s": 0.0, "errors": {}, "lat": [], "ttfb": [], "cpu_s": 0.0, "cpu_known": True,
            "ingest_cpu_s": None, "ingest_rss_mib": 0.0,
            "rss_mib": 0.0, "load_util": [], "noise": [], "per_round_rps": [], "mode": res["mode"],
            "offered_rps": res.get("offered_rps")})
        cell["ok"] += res["ok"]
        cell["window_s"] += res["duration_s"]
        for k, v in res["errors"].items():
            cell["errors"][k] = cell["errors"].get(k, 0) + v
        cell["lat"].append(res["histograms"]["latency"])
        if "ttfb" in res["histograms"]:
            cell["ttfb"].append(res["histograms"]["ttfb"])
        cell["per_round_rps"].append(res["throughput_rps"])
        server = res.get("server") or {}
        if server.get("cpu_s") is None:
            cell["cpu_known"] = False
        else:
            cell["cpu_s"] += server["cpu_s"]
            cell["rss_mib"] = max(cell["rss_mib"], server.get("rss_mib", 0.0))
        if server.get("ingest_cpu_s") is not None:  # the supervised ingester, apart from serving
            cell["ingest_cpu_s"] = (cell["ingest_cpu_s"] or 0.0) + server["ingest_cpu_s"]
            cell["ingest_rss_mib"] = max(cell["ingest_rss_mib"], server.get("ingest_rss_mib", 0.0))
        if "load_util" in server:
            cell["load_util"].append(server["load_util"])
        if "core_noise" in server:
            cell["noise"].append(server["core_noise"])
    table: dict[str, dict[str, dict]] = {}
    for phase, targets in cells.items():
        table[phase] = {}
        for name, c in targets.items():
            lat = stats.summary(stats.merge(c["lat"]))
            row = {"mode": c["mode"], "offered_rps": c["offered_rps"], "ok": c["ok"], "errors": c["errors"],
                   "throughput_rps": round(c["ok"] / c["window_s"], 1) if c["window_s"] else 0.0,
                   "per_round_rps": c["per_round_rps"], "latency_ms": lat,
                   "cpu_ms_per_req": (round(c["cpu_s"] * 1000 / c["ok"], 4) if c["cpu_known"] and c["ok"] else None),
                   "rss_mib": c["rss_mib"] or None,
                   "ingest_cpu_ms_per_req": (round(c["ingest_cpu_s"] * 1000 / c["ok"], 4)
                                             if c["ingest_cpu_s"] is not None and c["ok"] else None),
                   "ingest_rss_mib": c["ingest_rss_mib"] or None,
                   "load_util": round(sum(c["load_util"]) / len(c["load_util"]), 3) if c["load_util"] else None,
                   "core_noise": round(sum(c["noise"]) / len(c["noise"]), 3) if c["noise"] else None}
            if c["ttfb"]:
                row["ttfb_ms"] = stats.summary(stats.merge(c["ttfb"]))
            table[phase][name] = row
        ref = table[phase].get(reference)
        for row in table[phase].values():
            if ref and ref["latency_ms"].get("count") and row["latency_ms"].get("count"):
                row["added_ms"] = {k: round(row["latency_ms"][k] - ref["latency_ms"][k], 4)
                                   for k in ("p50", "p90", "p99", "p99.9")}
    return table
