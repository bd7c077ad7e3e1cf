"""Human-readable lines and tables from result dicts."""

from __future__ import annotations

from typing import Any


def _ms(summary: dict | None, key: str) -> str:
    if not summary or key not in summary:
        return "-"
    return f"{summary[key]:.3f}"


def step_line(step: dict[str, Any]) -> str:
    """One line per step: mode, load, throughput, latency percentiles, errors, server CPU."""
    load = f"{step['offered_rps']:g} req/s offered" if step["mode"] == "open" else f"c={step['concurrency']}"
    lat = step.get("latency_ms")
    parts = [f"{step['mode']:6} {load:>18}: {step['throughput_rps']:>9,.1f} req/s ok={step['ok']}",
             f"latency p50 {_ms(lat, 'p50')} p99 {_ms(lat, 'p99')} p99.9 {_ms(lat, 'p99.9')} ms"]
    if step.get("ttfb_ms"):
        parts.append(f"ttfb p50 {_ms(step['ttfb_ms'], 'p50')} ms, itl p50 {_ms(step.get('itl_ms'), 'p50')} ms")
    if step.get("dispatch_lag_ms", {}).get("count"):
        parts.append(f"lag p99 {_ms(step['dispatch_lag_ms'], 'p99')} ms")
    if step["errors"]:
        parts.append(f"errors {step['errors']}")
    server = step.get("server")
    if server and server.get("cpu_ms_per_req") is not None:
        parts.append(f"server {server['cpu_ms_per_req']:.3f} CPU ms/req, {server['rss_mib']} MiB")
    if server and server.get("ingest_cpu_ms_per_req") is not None:
        parts.append(f"ingester {server['ingest_cpu_ms_per_req']:.3f} CPU ms/req, {server.get('ingest_rss_mib')} MiB")
    return " | ".join(parts)


# The reference figures for LiteLLM 1.108.7 on this machine kind (one worker, no DB).
LITELLM_RPS = {"json": 140.0, "stream": 41.0}


def _f(x, fmt: str = "{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def _kind(phase: str) -> str:
    return "stream" if "stream" in phase else "json"


def verdicts(table: dict, soak: dict | None, *, baseline: str = "bare-proxy",
             target: str = "gateway-on") -> list[dict]:
    """The issue's targets, each ``{"target", "value", "limit", "met"}`` (missing data: skipped)."""
    out = []

    def add(what: str, value, limit: str, met: bool) -> None:
        out.append({"check": what, "value": value, "limit": limit, "met": bool(met)})

    for phase, cells in table.items():
        gw, base = cells.get(target), cells.get(baseline)
        if gw is None:
            continue
        kind = _kind(phase)
        if phase.startswith("saturation") and base and base["throughput_rps"]:
            ratio = gw["throughput_rps"] / base["throughput_rps"]
            add(f"{phase}: throughput >= 0.5x bare proxy", f"{gw['throughput_rps']:,.0f} req/s = {ratio:.2f}x",
                ">= 0.50x", ratio >= 0.5)
            lite = gw["throughput_rps"] / LITELLM_RPS[kind]
            add(f"{phase}: >= 30x LiteLLM's figure ({LITELLM_RPS[kind]:g}/s, from the issue)", f"{lite:.0f}x",
                ">= 30x", lite >= 30)
            if gw.get("cpu_ms_per_req") and base.get("cpu_ms_per_req"):
                c = gw["cpu_ms_per_req"] / base["cpu_ms_per_req"]
                add(f"{phase}: CPU per request <= 2x bare proxy",
                    f"{gw['cpu_ms_per_req']:.3f} ms = {c:.2f}x", "<= 2.00x", c <= 2.0)
        if phase.startswith("added-latency") and gw.get("added_ms"):
            a = gw["added_ms"]
            add(f"{phase}: added latency p50 at {gw['offered_rps']:g} req/s", f"{a['p50']:.3f} ms", "<= 0.5 ms",
                a["p50"] <= 0.5)
            add(f"{phase}: added latency p99 at {gw['offered_rps']:g} req/s", f"{a['p99']:.3f} ms", "<= 2 ms",
                a["p99"] <= 2.0)
    if soak and soak.get("rss_growth_pct") is not None:
        marks = ", ".join(f"{k}: {v} MiB" for k, v in soak["rss_mib_at"].items())
        add(f"soak: RSS growth between checkpoints ({marks})", f"{soak['rss_growth_pct']:+.2f}%", "< 5%",
            soak["rss_growth_pct"] < 5.0)
    return out


def bench_table(table: dict, *, baseline: str = "bare-proxy", soak: dict | None = None,
                checks: list[dict] | None = None, host: dict | None = None, rounds: int = 1) -> str:
    """The Markdown results: one row per phase and target, then the soak and the verdicts."""
    lines = ["| phase | target | req/s | × bare | p50 ms | p99 ms | added p50 ms | added p99 ms | "
             "CPU ms/req | CPU × bare | RSS MiB | ingester CPU ms/req | ingester RSS MiB | load-core use | "
             "server-core noise | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for phase, cells in table.items():
        base = cells.get(baseline) or {}
        for name, row in cells.items():
            lat = row["latency_ms"]
            added = row.get("added_ms") or {}
            x_rps = (row["throughput_rps"] / base["throughput_rps"]
                     if base.get("throughput_rps") and row["mode"] == "closed" else None)
            x_cpu = (row["cpu_ms_per_req"] / base["cpu_ms_per_req"]
                     if row.get("cpu_ms_per_req") and base.get("cpu_ms_per_req") else None)
            load = f"{phase}" + (f" @{row['offered_rps']:g}/s" if row.get("offered_rps") else "")
            errors = ", ".join(f"{k}={v}" for k, v in row["errors"].items()) or "0"
            lines.append(
                f"| {load} | {name} | {row['throughput_rps']:,.0f} | {_f(x_rps, '{:.2f}')} | "
                f"{_f(lat.get('p50'))} | {_f(lat.get('p99'))} | {_f(added.get('p50'))} | {_f(added.get('p99'))} | "
                f"{_f(row.get('cpu_ms_per_req'))} | {_f(x_cpu, '{:.2f}')} | {_f(row.get('rss_mib'), '{:.0f}')} | "
                f"{_f(row.get('ingest_cpu_ms_per_req'))} | {_f(row.get('ingest_rss_mib'), '{:.0f}')} | "
                f"{_f(row.get('load_util'), '{:.0%}')} | {_f(row.get('core_noise'), '{:.0%}')} | {errors} |")
    out = ["\n".join(lines)]
    if soak:
        out.append(f"Soak ({soak['scenario']}, {soak['requests']:,} requests in {soak['wall_s']:.0f} s, "
                   f"{soak['throughput_rps']:,.0f} req/s): RSS {soak['rss_mib_at']} MiB, growth "
                   f"{_f(soak.get('rss_growth_pct'), '{:+.2f}')}%.")
    if checks:
        out.append("| target check | value | limit | met |\n|---|---|---|---|\n" + "\n".join(
            f"| {c['check']} | {c['value']} | {c['limit']} | {'met' if c['met'] else 'MISSED'} |" for c in checks))
    if host:
        out.append(f"{rounds} round(s); host: {host.get('cpus')} CPUs, load average "
                   f"{host['loadavg_start'][0]:.2f} at start, {host.get('loadavg_end', (0,))[0]:.2f} at end; "
                   f"pinning: {host.get('pinned') or 'none'}; nice {host.get('nice', 0)}; "
                   f"gateway at {host.get('git') or '?'}.")
    return "\n\n".join(out) + "\n"
