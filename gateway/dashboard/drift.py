"""Drift checks: the last ``current_h`` hours (24) against the ``reference_h`` hours (7 days)
before them, for the rows that match the filters (typically one model or one prompt).

Checks (statistics in ``psi.py``):

- ``prompt_tokens``, ``completion_tokens``, ``latency_ms``: PSI over bins cut at the reference
  window's quantiles (``bins``, default 10: deciles), successful requests only (status < 400);
  ``warn`` at 0.1, ``drift`` at 0.25. Each carries the histogram of both windows (shares per bin).
- ``finish_reason``: PSI over the finish-reason mix of successful requests (same thresholds),
  with the category that moved most (e.g. more ``length`` cut-offs).
- ``error_rate``: a rise of at least ``min_error_change`` (1 percentage point) that a
  two-proportion z-test finds significant: ``warn`` at z ≥ 2, ``drift`` at z ≥ 3. A fall is ok.
- ``feedback_score``: the mean score of the feedback posted for each window's requests; a fall
  with effect size d ≤ −0.2 that Welch's z finds significant: ``warn`` at z ≤ −2, ``drift`` at
  z ≤ −3. A rise is ok.

A check needs ``min_samples`` rows (200) in both windows (``min_feedback`` scores, 20, for the
feedback check); with fewer it is ``n/a``, never flagged. When every check is ``n/a`` the result
says ``insufficient_data`` (nothing was compared: not the same as "no drift"). A ``model`` filter
naming a model that is neither in the config (``models``) nor in any row of the windows raises
``UnknownModelError``: a typo must not read as a quiet model. Two samples of one distribution have a
PSI of about ``(bins − 1)·(1/n_ref + 1/n_cur)`` by chance alone (reported as ``noise``): with 50
current rows and deciles that is ~0.2, and a chance "drift" in one check of five; with 200 it is
~0.05. The result is ``flagged`` when any check is at
``drift``.

The SQL reads raw rows (the windows are exact to the millisecond); every value is a query
parameter. The quantile cut points come from ``quantilesDeterministic`` (a reservoir of 8,192
values chosen by a hash of ``request_id``: exact up to that many rows, reproducible beyond).
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from gateway.dashboard import psi as stats
from gateway.dashboard.filters import FilterError, Filters
from gateway.dashboard.sql import Fetch

METRICS = {  # check name -> SQL expression (constants, never user input)
    "prompt_tokens": "toFloat64(prompt_tokens)",
    "completion_tokens": "toFloat64(completion_tokens)",
    "latency_ms": "latency_ms",
}


class UnknownModelError(Exception):
    """The ``model`` to check is not in the config and has no rows in the windows."""

    code = "model_not_found"


@dataclass(frozen=True)
class DriftOptions:
    """Windows and thresholds of the drift checks."""

    current_h: float = 24.0
    reference_h: float = 168.0
    bins: int = 10
    min_samples: int = 200
    min_feedback: int = 20
    psi_warn: float = stats.PSI_WARN
    psi_drift: float = stats.PSI_DRIFT
    min_error_change: float = 0.01
    warn_z: float = 2.0
    drift_z: float = 3.0
    min_effect: float = 0.2
    eval_runs: bool = False  # count the calls of `eval run` (tagged metadata.eval_run): not traffic

    @classmethod
    def from_query(cls, query) -> DriftOptions:
        """From request query parameters (``current_h``, ``reference_h``, ``bins``, ``min_samples``,
        ``eval_runs``)."""
        def num(name: str, default, kind=float, lo=None, hi=None):
            raw = (query.get(name) or "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise FilterError(f"{name} must be a number") from None
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise FilterError(f"{name} must be between {lo} and {hi}")
            return value

        return cls(current_h=num("current_h", cls.current_h, float, 0.25, 24 * 30),
                   reference_h=num("reference_h", cls.reference_h, float, 1, 24 * 90),
                   bins=num("bins", cls.bins, int, 2, 20),
                   min_samples=num("min_samples", cls.min_samples, int, 1, 10**9),
                   eval_runs=(query.get("eval_runs") or "").strip().lower() in ("1", "true", "yes"))

    def thresholds(self) -> dict:
        return {"psi_warn": self.psi_warn, "psi_drift": self.psi_drift, "min_samples": self.min_samples,
                "min_feedback": self.min_feedback, "min_error_change": self.min_error_change,
                "warn_z": self.warn_z, "drift_z": self.drift_z, "min_effect": self.min_effect}


def _num(x: float | None, digits: int = 4) -> float | None:
    if x is None or math.isnan(x) or math.isinf(x):
        return None
    return round(x, digits)


def _json_z(z: float) -> float | str:
    """z for JSON (±inf as a string)."""
    if math.isinf(z):
        return "inf" if z > 0 else "-inf"
    return round(z, 3)


def run_drift(fetch: Fetch, f: Filters, opts: DriftOptions = DriftOptions(), now: float | None = None,
              models: Collection[str] | None = None) -> dict:
    """All checks for the rows matching ``f``'s filters (its time range is ignored: the windows
    end at ``now``, epoch seconds, default the current time). ``models``: the config's public
    model names (``None``: do not check ``f.model``)."""
    end_ms = int((time.time() if now is None else now) * 1000)
    cur_from = end_ms - int(opts.current_h * 3600_000)
    ref_from = cur_from - int(opts.reference_h * 3600_000)
    params = {**f.params(), "ref_from": ref_from, "cur_from": cur_from, "end": end_ms}
    dims = f.dims_where()
    if not opts.eval_runs:  # an evaluation's calls are not the traffic being watched
        dims += " AND metadata['eval_run'] = ''"
    window = ("ts_start >= fromUnixTimestamp64Milli({ref_from:Int64}, 'UTC') "
              "AND ts_start < fromUnixTimestamp64Milli({end:Int64}, 'UTC')")
    is_cur = "toUInt8(ts_start >= fromUnixTimestamp64Milli({cur_from:Int64}, 'UTC'))"
    where = f"{window} AND {dims}"
    if f.model and models is not None and f.model not in models:
        seen = fetch(f"SELECT count() AS n FROM llm_requests WHERE {window} AND model_requested = {{model:String}}",
                     params)
        if not (seen and seen[0].get("n")):
            hours = opts.current_h + opts.reference_h
            raise UnknownModelError(f"unknown model {f.model!r}: not a model of the config and no request for it "
                                    f"in the last {hours:g} h (known: {', '.join(sorted(models)) or 'none'})")

    counts = fetch(f"""SELECT {is_cur} AS cur, count() AS requests, countIf(status_code >= 400) AS errors,
    countIf(status_code < 400) AS ok,
    quantileIf(0.5)(toFloat64(prompt_tokens), status_code < 400) AS prompt_tokens_p50,
    quantileIf(0.5)(toFloat64(completion_tokens), status_code < 400) AS completion_tokens_p50,
    quantileIf(0.5)(latency_ms, status_code < 400) AS latency_ms_p50
FROM llm_requests WHERE {where} GROUP BY cur""", params)
    by = {r["cur"]: r for r in counts}
    ref, cur = by.get(0, {}), by.get(1, {})
    n_ref_ok, n_cur_ok = ref.get("ok", 0), cur.get("ok", 0)
    enough = n_ref_ok >= opts.min_samples and n_cur_ok >= opts.min_samples

    checks: list[dict[str, Any]] = []
    # --- distributions: PSI over the reference window's quantile bins ---------------------------
    levels = ", ".join(f"{q:g}" for q in stats.quantile_levels(opts.bins))
    edges_row: dict = {}
    if enough:
        select = ", ".join(f"quantilesDeterministic({levels})({expr}, cityHash64(request_id)) AS {name}"
                           for name, expr in METRICS.items())
        rows = fetch(f"""SELECT {select} FROM llm_requests
WHERE ts_start >= fromUnixTimestamp64Milli({{ref_from:Int64}}, 'UTC')
  AND ts_start < fromUnixTimestamp64Milli({{cur_from:Int64}}, 'UTC') AND {dims} AND status_code < 400""", params)
        edges_row = rows[0] if rows else {}
    for name, expr in METRICS.items():
        check: dict[str, Any] = {"name": name, "kind": "psi", "reference_n": n_ref_ok, "current_n": n_cur_ok,
                                 "reference_p50": _num(ref.get(f"{name}_p50"), 2),
                                 "current_p50": _num(cur.get(f"{name}_p50"), 2)}
        if not enough:
            checks.append({**check, "value": None, "level": stats.NA,
                           "detail": f"needs {opts.min_samples} successful requests in each window"})
            continue
        edges = stats.edges_from_quantiles(edges_row.get(name) or [])
        hist = fetch(f"""SELECT {is_cur} AS cur, arrayCount(e -> e < {expr}, {{edges:Array(Float64)}}) AS bin,
    count() AS n
FROM llm_requests WHERE {where} AND status_code < 400 GROUP BY cur, bin""", {**params, "edges": edges})
        ref_counts, cur_counts = [0] * (len(edges) + 1), [0] * (len(edges) + 1)
        for row in hist:
            (cur_counts if row["cur"] else ref_counts)[row["bin"]] += row["n"]
        value = stats.psi(ref_counts, cur_counts)
        level = stats.psi_level(value, opts.psi_warn, opts.psi_drift)
        digits = 1 if name == "latency_ms" else 0
        noise = len(edges) * (1 / max(n_ref_ok, 1) + 1 / max(n_cur_ok, 1))
        check.update({"value": round(value, 4), "level": level, "noise": round(noise, 4),
                      "detail": f"PSI {value:.3f} over {len(edges) + 1} bins; median "
                                f"{_fmt(check['reference_p50'])} → {_fmt(check['current_p50'])}",
                      "histogram": {"edges": edges,
                                    "labels": stats.bin_labels(edges, lambda v, d=digits: f"{v:.{d}f}"),
                                    "reference": [round(x, 4) for x in stats.shares(ref_counts)],
                                    "current": [round(x, 4) for x in stats.shares(cur_counts)],
                                    "reference_counts": ref_counts, "current_counts": cur_counts}})
        checks.append(check)

    # --- finish-reason mix -----------------------------------------------------------------------
    mix = fetch(f"""SELECT {is_cur} AS cur, if(finish_reason = '', '(none)', finish_reason) AS reason, count() AS n
FROM llm_requests WHERE {where} AND status_code < 400 GROUP BY cur, reason ORDER BY reason""", params)
    ref_mix = {r["reason"]: r["n"] for r in mix if not r["cur"]}
    cur_mix = {r["reason"]: r["n"] for r in mix if r["cur"]}
    reasons = sorted(set(ref_mix) | set(cur_mix))
    ref_share = dict(zip(reasons, stats.shares([ref_mix.get(k, 0) for k in reasons])))
    cur_share = dict(zip(reasons, stats.shares([cur_mix.get(k, 0) for k in reasons])))
    fr: dict[str, Any] = {"name": "finish_reason", "kind": "psi", "reference_n": n_ref_ok, "current_n": n_cur_ok,
                          "categories": [{"category": k, "reference": round(ref_share[k], 4),
                                          "current": round(cur_share[k], 4)} for k in reasons]}
    if enough and reasons:
        value = stats.categorical_psi(ref_mix, cur_mix)
        # the category that moved most (a rise wins a tie: "more length cut-offs" is the news)
        mover = max(reasons, key=lambda k: (round(abs(cur_share[k] - ref_share[k]), 9), cur_share[k] > ref_share[k], k))
        fr.update({"value": round(value, 4), "level": stats.psi_level(value, opts.psi_warn, opts.psi_drift),
                   "detail": f"PSI {value:.3f}; {mover} {ref_share[mover]:.1%} → {cur_share[mover]:.1%}"})
    else:
        fr.update({"value": None, "level": stats.NA,
                   "detail": f"needs {opts.min_samples} successful requests in each window"})
    checks.append(fr)

    # --- error rate --------------------------------------------------------------------------------
    n_ref, n_cur = ref.get("requests", 0), cur.get("requests", 0)
    x_ref, x_cur = ref.get("errors", 0), cur.get("errors", 0)
    er: dict[str, Any] = {"name": "error_rate", "kind": "rate", "reference_n": n_ref, "current_n": n_cur,
                          "reference": round(x_ref / n_ref, 4) if n_ref else None,
                          "current": round(x_cur / n_cur, 4) if n_cur else None,
                          "reference_errors": x_ref, "current_errors": x_cur}
    if n_ref >= opts.min_samples and n_cur >= opts.min_samples:
        z = stats.two_proportion_z(x_ref, n_ref, x_cur, n_cur)
        change = x_cur / n_cur - x_ref / n_ref
        er.update({"change": round(change, 4), "value": _json_z(z),
                   "level": stats.rise_level(z, change, opts.min_error_change, opts.warn_z, opts.drift_z),
                   "detail": f"{x_ref / n_ref:.2%} → {x_cur / n_cur:.2%} ({change * 100:+.2f} pp, z {z:.2f})"})
    else:
        er.update({"change": None, "value": None, "level": stats.NA,
                   "detail": f"needs {opts.min_samples} requests in each window"})
    checks.append(er)

    # --- feedback score ------------------------------------------------------------------------------
    fb = fetch(f"""SELECT toUInt8(r.ts_start >= fromUnixTimestamp64Milli({{cur_from:Int64}}, 'UTC')) AS cur,
    count() AS n, avg(f.score) AS mean, varSamp(f.score) AS var
FROM llm_feedback AS f
INNER JOIN (SELECT request_id, ts_start FROM llm_requests WHERE {where}) AS r ON f.request_id = r.request_id
GROUP BY cur""", params)
    fb_by = {r["cur"]: r for r in fb}
    fr_ref, fr_cur = fb_by.get(0, {}), fb_by.get(1, {})
    m_ref, m_cur = fr_ref.get("mean"), fr_cur.get("mean")
    k_ref, k_cur = fr_ref.get("n", 0), fr_cur.get("n", 0)
    fs: dict[str, Any] = {"name": "feedback_score", "kind": "mean", "reference_n": k_ref, "current_n": k_cur,
                          "reference": _num(m_ref, 4) if k_ref else None, "current": _num(m_cur, 4) if k_cur else None}
    if k_ref >= opts.min_feedback and k_cur >= opts.min_feedback:
        assert m_ref is not None and m_cur is not None  # both windows have scores
        v_ref, v_cur = fr_ref.get("var") or 0.0, fr_cur.get("var") or 0.0
        z = stats.welch_z(m_ref, v_ref, k_ref, m_cur, v_cur, k_cur)
        d = stats.cohens_d(m_ref, v_ref, k_ref, m_cur, v_cur, k_cur)
        fs.update({"change": round(m_cur - m_ref, 4), "value": _json_z(z), "effect_size": _json_z(d),
                   "level": stats.drop_level(z, d, opts.min_effect, opts.warn_z, opts.drift_z),
                   "detail": f"mean {m_ref:.3f} → {m_cur:.3f} (z {z:.2f}, d {d:.2f})"})
    else:
        fs.update({"change": None, "value": None, "level": stats.NA,
                   "detail": f"needs {opts.min_feedback} scores in each window"})
    checks.append(fs)

    level = stats.worst(c["level"] for c in checks)
    return {"filters": {k: v for k, v in f.describe().items() if k not in ("from", "to", "step_s")},
            "windows": {"reference": {"from": ref_from, "to": cur_from, "requests": n_ref},
                        "current": {"from": cur_from, "to": end_ms, "requests": n_cur}},
            "level": level, "flagged": level == stats.DRIFT,
            "insufficient_data": all(c["level"] == stats.NA for c in checks),
            "thresholds": opts.thresholds(), "checks": checks}


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:g}"


def render_table(result: dict) -> str:
    """The drift result as a text table (``llm-gateway drift``)."""
    f = result["filters"]
    scope = ", ".join(f"{k}={v}" for k, v in f.items() if v) or "all traffic"
    w = result["windows"]
    span = lambda a, b: f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(a / 1000))}–" \
                        f"{time.strftime('%m-%d %H:%M', time.gmtime(b / 1000))} UTC"  # noqa: E731
    lines = [f"drift for {scope}",
             f"  current   {span(w['current']['from'], w['current']['to'])}: {w['current']['requests']} requests",
             f"  reference {span(w['reference']['from'], w['reference']['to'])}: {w['reference']['requests']} requests",
             ""]
    header = ("check", "reference", "current", "statistic", "level")
    rows = []
    for c in result["checks"]:
        if c["kind"] == "psi" and c["name"] != "finish_reason":
            ref = f"p50 {_fmt(c.get('reference_p50'))} (n={c['reference_n']})"
            cur = f"p50 {_fmt(c.get('current_p50'))} (n={c['current_n']})"
            stat = f"PSI {c['value']:.3f}" if c["value"] is not None else "–"
        elif c["name"] == "finish_reason":
            cats = sorted(c["categories"], key=lambda x: -abs(x["current"] - x["reference"]))[:2]
            ref = ", ".join(f"{x['category']} {x['reference']:.1%}" for x in cats) or "–"
            cur = ", ".join(f"{x['category']} {x['current']:.1%}" for x in cats) or "–"
            stat = f"PSI {c['value']:.3f}" if c["value"] is not None else "–"
        elif c["name"] == "error_rate":
            ref = f"{c['reference']:.2%} ({c['reference_errors']}/{c['reference_n']})" if c["reference"] is not None \
                else "–"
            cur = f"{c['current']:.2%} ({c['current_errors']}/{c['current_n']})" if c["current"] is not None else "–"
            stat = f"z {c['value']}" if c["value"] is not None else "–"
        else:
            ref = f"{c['reference']:.3f} (n={c['reference_n']})" if c["reference"] is not None else "–"
            cur = f"{c['current']:.3f} (n={c['current_n']})" if c["current"] is not None else "–"
            stat = f"z {c['value']}" if c["value"] is not None else "–"
        rows.append((c["name"], ref, cur, stat, c["level"].upper() if c["level"] == stats.DRIFT else c["level"]))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt_row = lambda r: "  ".join(str(v).ljust(widths[i]) for i, v in enumerate(r)).rstrip()  # noqa: E731
    lines.append(fmt_row(header))
    lines.append(fmt_row(tuple("-" * wd for wd in widths)))
    lines.extend(fmt_row(r) for r in rows)
    lines.append("")
    flagged = [c["name"] for c in result["checks"] if c["level"] == stats.DRIFT]
    warned = [c["name"] for c in result["checks"] if c["level"] == stats.WARN]
    if flagged:
        lines.append(f"DRIFT: {', '.join(flagged)}")
    elif warned:
        lines.append(f"warn (below the drift threshold): {', '.join(warned)}")
    elif result.get("insufficient_data"):
        t = result.get("thresholds") or {}
        lines.append(f"insufficient data: no check could compare the windows (each needs "
                     f"{t.get('min_samples', '?')} requests in both, the feedback check "
                     f"{t.get('min_feedback', '?')} scores)")
    else:
        lines.append("no drift")
    for c in result["checks"]:
        if c["level"] in (stats.DRIFT, stats.WARN):
            lines.append(f"  {c['name']}: {c['detail']}")
    return "\n".join(lines) + "\n"
