"""Bias monitoring: do segments of the traffic (a metadata value, a tenant, a user, …) get
different answers? And do raters score alike?

The counts come from the saved queries ``bias-segments`` and ``bias-feedback`` (aggregated in
ClickHouse: per segment, counts, sums and sums of squares); the tests (``stats.py``) run on
those here or, for the dashboard, in a child process (``compute``).

Segment checks (``run_bias`` with ``raters=False``), over the segments with at least
``min_count`` requests (the others are listed, marked ``judged: false``, and left out):

- ``refusal_rate``: refusals among answered requests (status < 400) — finish reason
  ``content_filter``, the row's ``refusal`` flag, or ``refusal_pattern`` matching the logged
  response body (chi-square, Cramér's V);
- ``error_rate``: status ≥ 400 among all requests (chi-square, Cramér's V);
- ``feedback_score``: mean score posted for the segment's requests, segments with at least
  ``min_feedback`` scores (Welch, Hedges' g);
- ``output_tokens``, ``latency_ms``: means over answered requests (Welch, Hedges' g).

Rater checks (``raters=True``): ``rater_score`` — the mean score each rater gave (raters with
``min_feedback`` scores; feedback without a rater is counted as ``unrated``, not judged); with
a segment (``by``), also ``rater_score[<segment>]`` for each segment: the raters compared on
that segment's requests alone, so a rater who scores one segment lower stands out there.

A check is at ``disparity`` when its Holm-adjusted p-value (over every check of the analysis
that ran) is below ``alpha`` and its effect size reaches ``min_rate_effect`` (Cramér's V) or
``min_mean_effect`` (|Hedges' g|); ``ok`` otherwise; ``n/a`` with fewer than two segments to
compare. ``insufficient_data``: every check ``n/a``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.bias.stats import holm
from gateway.config.bias import re2_problem
from gateway.dashboard.drift import UnknownModelError
from gateway.dashboard.filters import FilterError, Filters, parse_prompt
from gateway.dashboard.sql import Fetch
from gateway.telemetry.queries import builtin_queries, parse_saved

COLUMNS = ("tenant", "user", "api_key_id", "user_agent", "experiment_arm", "model", "backend")
DISPARITY, OK, NA = "disparity", "ok", "n/a"
_KEY_RE = re.compile(r"^[\w.:/-]{1,200}$")
Compute = Callable[[Sequence[dict]], list[dict]]


def parse_by(text: str, allow_none: bool = False) -> tuple[str, str]:
    """``"metadata.team"`` → ``("metadata", "team")``; ``"tenant"`` → ``("tenant", "")``; with
    ``allow_none``, ``""``/``"none"`` → ``("none", "")``."""
    text = (text or "").strip()
    if allow_none and text in ("", "none"):
        return "none", ""
    if text.startswith("metadata."):
        key = text[len("metadata."):]
        if not _KEY_RE.match(key):
            raise FilterError(f"bad metadata key in {text!r}")
        return "metadata", key
    if text in COLUMNS:
        return text, ""
    raise FilterError(f"--by must be metadata.<key> or one of {', '.join(COLUMNS)} (got {text!r})")


@dataclass(frozen=True)
class BiasOptions:
    """What to analyse and the thresholds. ``by``: ``metadata.<key>`` or a column of ``COLUMNS``
    (``none`` for raters alone)."""

    by: str = "tenant"
    raters: bool = False
    hours: float = 168.0
    min_count: int = 30
    min_feedback: int = 20
    alpha: float = 0.05
    min_rate_effect: float = 0.1
    min_mean_effect: float = 0.2
    refusal_pattern: str = ""
    eval_runs: bool = False  # count the calls of `eval run` (tagged metadata.eval_run): not traffic

    @classmethod
    def from_query(cls, query) -> BiasOptions:
        """From request query parameters (``by``, ``raters``, ``min_count``, ``min_feedback``,
        ``alpha``, ``refusal_pattern``, ``eval_runs``)."""
        def num(name: str, default, kind, lo, hi):
            raw = (query.get(name) or "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise FilterError(f"{name} must be a number") from None
            if not lo <= value <= hi:
                raise FilterError(f"{name} must be between {lo} and {hi}")
            return value

        raters = (query.get("raters") or "").strip().lower() in ("1", "true", "yes")
        by = (query.get("by") or ("none" if raters else "tenant")).strip()
        parse_by(by, allow_none=raters)
        pattern = query.get("refusal_pattern") or ""
        if len(pattern) > 1000:
            raise FilterError("refusal_pattern is too long")
        check_refusal_pattern(pattern)
        return cls(by=by, raters=raters, min_count=num("min_count", cls.min_count, int, 2, 10**9),
                   min_feedback=num("min_feedback", cls.min_feedback, int, 2, 10**9),
                   alpha=num("alpha", cls.alpha, float, 1e-9, 0.5), refusal_pattern=pattern,
                   eval_runs=(query.get("eval_runs") or "").strip().lower() in ("1", "true", "yes"))

    def thresholds(self) -> dict:
        return {"min_count": self.min_count, "min_feedback": self.min_feedback, "alpha": self.alpha,
                "min_rate_effect": self.min_rate_effect, "min_mean_effect": self.min_mean_effect,
                "correction": "holm"}


def check_refusal_pattern(pattern: str) -> None:
    """Refuse (``FilterError``) a pattern ClickHouse's RE2 would not compile, before a query
    fails on it."""
    problem = re2_problem(pattern) if pattern else None
    if problem:
        raise FilterError(f"refusal_pattern is not a valid RE2 regular expression: {problem}")


def saved_sql(name: str) -> str:
    """The SQL of a shipped saved query (the package's own: its columns are what this reads)."""
    return parse_saved(builtin_queries() / f"{name}.sql").sql


def _params(f: Filters, opts: BiasOptions) -> dict[str, Any]:
    by, key = parse_by(opts.by, allow_none=opts.raters)
    return {"by": by, "key": key, "model": f.model, "prompt": f.prompt, "version": f.version or 0,
            "tenant": f.tenant, "backend": f.backend, "hours": 0, "from_ms": f.from_ms, "to_ms": f.to_ms,
            "refusal_pattern": opts.refusal_pattern, "eval_runs": 1 if opts.eval_runs else 0}


def window(hours: float, now: float | None = None, **filters: Any) -> Filters:
    """The last ``hours`` ending ``now`` (epoch seconds), with the row filters (``prompt`` may be
    ``name@version``)."""
    end = int((time.time() if now is None else now) * 1000)
    prompt, version = parse_prompt(filters.pop("prompt", "") or "")
    return Filters(from_ms=end - int(hours * 3600_000), to_ms=end, prompt=prompt, version=version, **filters)


def _num(x: Any, digits: int = 4) -> Any:
    x = float(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return None if math.isnan(x) else round(x, digits)


def _p(x: float) -> Any:
    """A p-value at full precision (the JSON is for programs; the table rounds it to 3
    significant digits): rounding to decimal places would give 8e-13 as 0."""
    x = float(x)
    return None if math.isnan(x) else x


def _mean(n: int, total: float, sumsq: float) -> tuple[float, float]:
    mean = total / n
    return mean, math.sqrt(max(0.0, (sumsq - total * total / n) / (n - 1))) if n > 1 else 0.0


class _Checks:
    """The checks of one analysis: collected, computed together, Holm-adjusted together."""

    def __init__(self, opts: BiasOptions):
        self.opts = opts
        self.checks: list[dict[str, Any]] = []
        self._tests: list[tuple[dict, dict]] = []

    def rate(self, name: str, groups: dict[str, tuple[int, int]], left_out: list[str]) -> None:
        values = {s: round(x / n, 4) for s, (x, n) in groups.items()}
        self._add(name, "rate", "cramers_v", groups, values, left_out)

    def mean(self, name: str, groups: dict[str, tuple[int, float, float]], left_out: list[str]) -> None:
        values = {s: round(g[1] / g[0], 4) for s, g in groups.items()}
        self._add(name, "mean", "hedges_g", groups, values, left_out)

    def _add(self, name: str, kind: str, effect: str, groups: dict, values: dict, left_out: list[str]) -> None:
        check: dict[str, Any] = {"name": name, "kind": kind, "effect": effect, "values": values,
                                 "n": {s: g[1] if kind == "rate" else g[0] for s, g in groups.items()},
                                 "left_out": left_out, "test": None, "statistic": None, "df": None, "p": None,
                                 "p_adjusted": None, "effect_size": None, "level": NA}
        if values:
            check["lowest"] = min(values, key=lambda s: values[s])
            check["highest"] = max(values, key=lambda s: values[s])
        self.checks.append(check)
        if len(groups) >= 2:
            self._tests.append((check, {"kind": kind, "groups": [list(g) for g in groups.values()]}))
        else:
            check["detail"] = "needs two segments above the minimum count"

    def finish(self, compute: Compute) -> list[dict]:
        results = compute([t for _, t in self._tests])
        adjusted = holm([float(r["p"]) for r in results])
        for (check, _), r, p_adj in zip(self._tests, results, adjusted):
            effect = float(r["effect"])
            threshold = self.opts.min_rate_effect if check["kind"] == "rate" else self.opts.min_mean_effect
            significant = p_adj < self.opts.alpha and abs(effect) >= threshold
            df = r["df"]
            check.update({"test": r["test"], "statistic": _num(r["statistic"], 4),
                          "df": [_num(d, 2) if d is not None else None for d in df] if isinstance(df, list) else df,
                          "p": _p(r["p"]), "p_adjusted": _p(p_adj), "effect_size": _num(effect, 4),
                          "level": DISPARITY if significant else OK,
                          "detail": f"{check['lowest']} {check['values'][check['lowest']]:g} – {check['highest']} "
                                    f"{check['values'][check['highest']]:g} (p adj {p_adj:.3g}, "
                                    f"{check['effect']} {effect:.3g})"})
        return self.checks


def _segments(seg_rows: list[dict], fb_rows: list[dict], opts: BiasOptions, checks: _Checks) -> tuple[list, int]:
    feedback: dict[str, list[float]] = {}
    for r in fb_rows:
        acc = feedback.setdefault(r["segment"], [0, 0.0, 0.0])
        acc[0] += r["n"]
        acc[1] += r["score_sum"]
        acc[2] += r["score_sumsq"]
    segments, unsegmented = [], 0
    refusal: dict[str, tuple[int, int]] = {}
    error: dict[str, tuple[int, int]] = {}
    output: dict[str, tuple[int, float, float]] = {}
    latency: dict[str, tuple[int, float, float]] = {}
    score: dict[str, tuple[int, float, float]] = {}
    left: dict[str, list[str]] = {k: [] for k in ("refusal", "error", "output", "feedback")}
    for r in seg_rows:
        name = r["segment"]
        if name == "":
            unsegmented += r["requests"]
            continue
        n, answered = r["requests"], r["answered"]
        fb = feedback.get(name, [0, 0.0, 0.0])
        judged = n >= opts.min_count
        seg: dict[str, Any] = {"segment": name, "requests": n, "answered": answered, "judged": judged,
                               "error_rate": round(r["errors"] / n, 4),
                               "refusal_rate": round(r["refusals"] / answered, 4) if answered else None,
                               "output_tokens": round(r["output_sum"] / answered, 2) if answered else None,
                               "latency_ms": round(r["latency_sum"] / answered, 1) if answered else None,
                               "feedback_n": int(fb[0]), "feedback_score": round(fb[1] / fb[0], 4) if fb[0] else None}
        if not judged:
            seg["reason"] = f"below the minimum count ({n} < {opts.min_count} requests)"
        segments.append(seg)
        if not judged:
            continue
        error[name] = (r["errors"], n)
        if answered >= opts.min_count:
            refusal[name] = (r["refusals"], answered)
            output[name] = (answered, r["output_sum"], r["output_sumsq"])
            latency[name] = (answered, r["latency_sum"], r["latency_sumsq"])
        else:
            left["refusal"].append(name)
        if fb[0] >= opts.min_feedback:
            score[name] = (int(fb[0]), fb[1], fb[2])
        else:
            left["feedback"].append(name)
    checks.rate("refusal_rate", refusal, left["refusal"])
    checks.rate("error_rate", error, [])
    checks.mean("feedback_score", score, left["feedback"])
    checks.mean("output_tokens", output, left["refusal"])
    checks.mean("latency_ms", latency, left["refusal"])
    return segments, unsegmented


def _raters(fb_rows: list[dict], by: str, opts: BiasOptions, checks: _Checks) -> tuple[list, int]:
    per_rater: dict[str, list[float]] = {}
    per_segment: dict[str, dict[str, tuple]] = {}
    unrated = 0
    for r in fb_rows:
        if r["rater"] == "":
            unrated += r["n"]
            continue
        acc = per_rater.setdefault(r["rater"], [0, 0.0, 0.0])
        acc[0] += r["n"]
        acc[1] += r["score_sum"]
        acc[2] += r["score_sumsq"]
        if by != "none" and r["segment"] != "":
            per_segment.setdefault(r["segment"], {})[r["rater"]] = (r["n"], r["score_sum"], r["score_sumsq"])
    raters = []
    overall, left = {}, []
    for name, (n, total, sumsq) in sorted(per_rater.items()):
        mean, sd = _mean(int(n), total, sumsq)
        judged = n >= opts.min_feedback
        entry: dict[str, Any] = {"rater": name, "n": int(n), "mean": round(mean, 4), "sd": round(sd, 4),
                                 "judged": judged}
        if by != "none":
            entry["segments"] = {s: round(g[name][1] / g[name][0], 4) for s, g in sorted(per_segment.items())
                                 if name in g}
        if judged:
            overall[name] = (int(n), total, sumsq)
        else:
            entry["reason"] = f"below the minimum count ({int(n)} < {opts.min_feedback} scores)"
            left.append(name)
        raters.append(entry)
    checks.mean("rater_score", overall, left)
    for segment, groups in sorted(per_segment.items()):
        enough = {k: g for k, g in groups.items() if g[0] >= opts.min_feedback}
        checks.mean(f"rater_score[{segment}]", enough, sorted(set(groups) - set(enough)))
    return raters, unrated


def run_bias(fetch: Fetch, f: Filters, opts: BiasOptions, compute: Compute,
             models: Collection[str] | None = None) -> dict:
    """The analysis of the rows matching ``f`` (its range is the window). ``compute``: runs the
    tests (``stats.run_tests``, or ``child.run_in_child`` in the serving process). ``models``:
    the config's public model names (``None``: do not check ``f.model``)."""
    params = _params(f, opts)
    if f.model and models is not None and f.model not in models:
        seen = fetch("SELECT count() AS n FROM llm_requests WHERE model_requested = {model:String} AND ts_start >= "
                     "fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC') AND ts_start < "
                     "fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')", params)
        if not (seen and seen[0].get("n")):
            raise UnknownModelError(f"unknown model {f.model!r}: not a model of the config and no request for it "
                                    f"in the window (known: {', '.join(sorted(models)) or 'none'})")
    checks = _Checks(opts)
    fb_rows = fetch(saved_sql("bias-feedback"), {k: v for k, v in params.items() if k != "refusal_pattern"})
    result: dict[str, Any] = {"kind": "raters" if opts.raters else "segments", "by": opts.by,
                              "filters": {k: v for k, v in f.describe().items() if k not in ("from", "to", "step_s")},
                              "window": {"from": f.from_ms, "to": f.to_ms}, "thresholds": opts.thresholds()}
    if opts.raters:
        result["raters"], result["unrated"] = _raters(fb_rows, params["by"], opts, checks)
    else:
        seg_rows = fetch(saved_sql("bias-segments"), params)
        result["segments"], result["unsegmented"] = _segments(seg_rows, fb_rows, opts, checks)
        result["refusal_pattern"] = opts.refusal_pattern
    result["checks"] = checks.finish(compute)
    result["flagged"] = any(c["level"] == DISPARITY for c in result["checks"])
    result["insufficient_data"] = all(c["level"] == NA for c in result["checks"])
    return result
