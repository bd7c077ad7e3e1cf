"""Latency percentiles against offered load, as a PNG (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

_STYLES = {"p50": "-", "p99": "--", "p99.9": ":"}


def plot_results(series: dict[str, list[dict]], out: str | Path, title: str = "latency vs offered load") -> Path:
    """``series``: name → step results. x = offered rate (open loop) or achieved throughput
    (closed loop); one colour per series, one line style per percentile; log-scaled y."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, steps) in enumerate(series.items()):
        points = sorted(((s["offered_rps"] if s.get("offered_rps") else s["throughput_rps"]), s["latency_ms"])
                        for s in steps if s.get("latency_ms", {}).get("count"))
        if not points:
            continue
        xs = [p[0] for p in points]
        for pct, style in _STYLES.items():
            ax.plot(xs, [p[1][pct] for p in points], style, marker="o", markersize=3,
                    color=colors[i % len(colors)], label=f"{name} {pct}")
    ax.set_xlabel("offered load (requests/s)")
    ax.set_ylabel("latency from scheduled send (ms, log)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
