"""The bias result as a text table (``llm-gateway bias``)."""

from __future__ import annotations

import time

from gateway.bias.analysis import DISPARITY


def _cell(value, fmt: str = "{:g}") -> str:
    return "–" if value is None else fmt.format(value)


def _table(header: tuple, rows: list) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(v).ljust(widths[i]) for i, v in enumerate(r)).rstrip()  # noqa: E731
    return [line(header), line(tuple("-" * w for w in widths)), *(line(r) for r in rows)]


def render_table(result: dict) -> str:
    f = result["filters"]
    scope = ", ".join(f"{k}={v}" for k, v in f.items() if v) or "all traffic"
    w = result["window"]
    span = (f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(w['from'] / 1000))}–"
            f"{time.strftime('%m-%d %H:%M', time.gmtime(w['to'] / 1000))} UTC")
    lines: list[str] = []
    if result["kind"] == "raters":
        by = "" if result["by"] == "none" else f", by {result['by']}"
        lines.append(f"rater bias for {scope}{by}, {span}")
        rows: list = [(r["rater"], r["n"], _cell(r["mean"]), _cell(r["sd"]),
                 ", ".join(f"{s} {v:g}" for s, v in r.get("segments", {}).items()) or "",
                 "" if r["judged"] else "not judged: " + r["reason"]) for r in result["raters"]]
        lines += _table(("rater", "scores", "mean", "sd", "by segment", ""), rows)
        if result["unrated"]:
            lines.append(f"({result['unrated']} scores without a rater, not judged)")
    else:
        lines.append(f"bias by {result['by']} for {scope}, {span}")
        rows = [(s["segment"], s["requests"], _cell(s["refusal_rate"], "{:.2%}"), _cell(s["error_rate"], "{:.2%}"),
                 f"{_cell(s['feedback_score'])} (n={s['feedback_n']})", _cell(s["output_tokens"]),
                 _cell(s["latency_ms"]), "" if s["judged"] else "not judged: " + s["reason"])
                for s in result["segments"]]
        lines += _table(("segment", "requests", "refusals", "errors", "feedback", "output_tokens", "latency_ms", ""),
                        rows)
        if result["unsegmented"]:
            lines.append(f"({result['unsegmented']} requests without a value for {result['by']}, not judged)")
    lines.append("")
    checks = [(c["name"], c["test"] or "–", _cell(c["p_adjusted"], "{:.3g}"),
             f"{c['effect']} {c['effect_size']}" if c["effect_size"] is not None else "–",
             c["level"].upper() if c["level"] == DISPARITY else c["level"]) for c in result["checks"]]
    lines += _table(("check", "test", "p (Holm)", "effect", "level"), checks)
    lines.append("")
    flagged = [c for c in result["checks"] if c["level"] == DISPARITY]
    if flagged:
        lines.append("DISPARITY: " + ", ".join(c["name"] for c in flagged))
        lines += [f"  {c['name']}: {c['detail']}" for c in flagged]
    elif result["insufficient_data"]:
        t = result["thresholds"]
        lines.append(f"insufficient data: no check had two segments to compare (each needs {t['min_count']} "
                     f"requests, feedback checks {t['min_feedback']} scores)")
    else:
        lines.append("no disparity")
    return "\n".join(lines) + "\n"
