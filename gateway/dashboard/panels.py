"""The figures behind each dashboard panel: fixed SQL with ``{name:Type}`` parameters, shaped
into JSON-ready dicts. Every function takes ``fetch(sql, params) -> rows`` (see ``sql.py``) and
the request's ``Filters``; it blocks, so handlers run it off the event loop.

Where the per-minute rollup ``llm_requests_1m`` can answer (no prompt filter: it has no prompt
columns) the traffic, latency and usage panels read it; otherwise, and for everything the rollup
does not hold (cache, prompts, single requests, attempts), they read the raw rows.
Latency percentiles are t-digest estimates in both cases (the rollup stores t-digest states).

Latency and TTFT are over the same requests, the successful ones (status < 400): errors answer
fast and have no first token, so mixing them in would make the two figures describe different
traffic. Errors are split into client errors (4xx: refusals, bad requests, the client leaving)
and backend errors (5xx: upstream failures, timeouts). A range that holds minutes rolled up
before the rollup had those states (schema version 6) is read from the raw rows instead.
"""

from __future__ import annotations

from typing import Any

from gateway.dashboard.filters import Filters
from gateway.dashboard.sql import Fetch

QUANTILES = "0.5, 0.9, 0.95, 0.99"  # the rollup's t-digest levels; p50 = [0], p95 = [2], p99 = [3]
TOP_MODELS = 6
LIST_LIMIT_MAX = 200


def _r(value: Any, digits: int = 1) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def _pcts(values: list | None) -> dict:
    values = values or [None] * 4
    return {"p50": _r(values[0]), "p90": _r(values[1]), "p95": _r(values[2]), "p99": _r(values[3])}


def _rollup_complete(fetch: Fetch, f: Filters) -> bool:
    """Whether every request the rollup holds for the range was rolled up with the
    success-only latency/TTFT and client-error states (``requests_v6 = requests``)."""
    rows = fetch(f"""SELECT toUInt64(countMerge(requests)) AS n, toUInt64(countMerge(requests_v6)) AS v6
FROM llm_requests_1m WHERE {f.rollup_where()}""", f.params())
    return not rows or rows[0]["n"] == rows[0]["v6"]


def _rollup_or_raw(f: Filters, fetch: Fetch | None = None) -> tuple[str, str, str]:
    """``(FROM … WHERE …, aggregate select list, source)`` for the traffic figures. With
    ``fetch`` the rollup is used only when it holds every state the select list reads."""
    if f.rollup_ok and (fetch is None or _rollup_complete(fetch, f)):
        return (f"FROM llm_requests_1m WHERE {f.rollup_where()}",
                f"""toUInt64(countMerge(requests)) AS requests, toUInt64(sumMerge(errors)) AS errors,
    toUInt64(sumMerge(client_errors)) AS client_errors,
    quantilesTDigestIfMerge({QUANTILES})(ok_latency_ms) AS latency,
    quantilesTDigestIfMerge({QUANTILES})(ok_ttft_ms) AS ttft,
    toUInt64(sumMerge(prompt_tokens)) AS prompt_tokens, toUInt64(sumMerge(completion_tokens)) AS completion_tokens,
    sumMerge(cost_usd) AS cost_usd""", "rollup")
    return (f"FROM llm_requests WHERE {f.raw_where()}",
            f"""count() AS requests, countIf(status_code >= 400) AS errors,
    countIf(status_code >= 400 AND status_code < 500) AS client_errors,
    quantilesTDigestIf({QUANTILES})(latency_ms, status_code < 400) AS latency,
    quantilesTDigestIf({QUANTILES})(ifNull(ttft_ms, 0), ttft_ms IS NOT NULL AND status_code < 400) AS ttft,
    sum(toUInt64(prompt_tokens)) AS prompt_tokens, sum(toUInt64(completion_tokens)) AS completion_tokens,
    sum(ifNull(cost_usd, 0)) AS cost_usd""", "raw")


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _bucket(f: Filters, col: str) -> str:
    return f"toUnixTimestamp(toStartOfInterval({col}, INTERVAL {{step:UInt32}} SECOND))"


def bucket_starts(f: Filters) -> list[int]:
    """The time axis: every bucket start (epoch seconds) from the range's start to its end."""
    step = f.step_s
    start = (f.from_ms // 1000) // step * step
    return list(range(start, (f.to_ms - 1) // 1000 + 1, step))


def options(fetch: Fetch, f: Filters) -> dict:
    """Values seen in the range for the filter pickers (other filters not applied)."""
    bare = Filters(from_ms=f.from_ms, to_ms=f.to_ms)
    dims = fetch(f"""SELECT arraySort(groupUniqArray(tenant)) AS tenants, arraySort(groupUniqArray(model)) AS models,
    arraySort(groupUniqArray(backend)) AS backends
FROM llm_requests_1m WHERE {bare.rollup_where()}""", bare.params())
    prompts = fetch(f"""SELECT prompt_id AS prompt, arraySort(groupUniqArray(assumeNotNull(prompt_version))) AS versions
FROM llm_requests WHERE {bare.raw_where()} AND prompt_id != '' AND prompt_version IS NOT NULL
GROUP BY prompt ORDER BY prompt LIMIT 500""", bare.params())
    d = dims[0] if dims else {}
    return {"range": f.describe(), "tenants": [t for t in d.get("tenants", []) if t],
            "models": [m for m in d.get("models", []) if m], "backends": [b for b in d.get("backends", []) if b],
            "prompts": prompts}


def summary(fetch: Fetch, f: Filters) -> dict:
    """Totals over the range: requests, rate, errors (client / backend), latency and TTFT
    percentiles of successful requests, tokens, cost."""
    source_sql, aggs, source = _rollup_or_raw(f, fetch)
    rows = fetch(f"SELECT {aggs}\n{source_sql}", f.params())
    r = rows[0] if rows else {}
    requests = r.get("requests") or 0
    errors = r.get("errors") or 0
    client = r.get("client_errors") or 0
    return {"range": f.describe(), "source": source, "requests": requests, "errors": errors,
            "error_rate": _rate(errors, requests),
            "client_errors": client, "client_error_rate": _rate(client, requests),
            "backend_errors": errors - client, "backend_error_rate": _rate(errors - client, requests),
            "rps": round(requests / f.span_s, 4) if f.span_s > 0 else None,
            "latency_ms": _pcts(r.get("latency") if requests else None),
            "ttft_ms": _pcts(r.get("ttft") if requests else None),
            "prompt_tokens": r.get("prompt_tokens") or 0, "completion_tokens": r.get("completion_tokens") or 0,
            "cost_usd": round(r.get("cost_usd") or 0.0, 6)}


def timeseries(fetch: Fetch, f: Filters) -> dict:
    """Per bucket: requests, requests/s, errors (all, client, backend), error rate; p50/p95/p99
    latency and TTFT of successful requests for the busiest models (``TOP_MODELS``)."""
    source_sql, aggs, source = _rollup_or_raw(f, fetch)
    time_col, model_col = ("minute", "model") if source == "rollup" else ("ts_start", "model_requested")
    rows = fetch(f"""SELECT {_bucket(f, time_col)} AS t, {model_col} AS model, {aggs}
{source_sql}
GROUP BY t, model ORDER BY t, model""", f.params())
    axis = bucket_starts(f)
    index = {t: i for i, t in enumerate(axis)}
    n = len(axis)
    requests, errors, client = [0] * n, [0] * n, [0] * n
    totals: dict[str, int] = {}
    for row in rows:
        i = index.get(row["t"])
        if i is None:
            continue
        requests[i] += row["requests"]
        errors[i] += row["errors"]
        client[i] += row["client_errors"]
        totals[row["model"]] = totals.get(row["model"], 0) + row["requests"]
    top = sorted(totals, key=lambda m: (-totals[m], m))[:TOP_MODELS]
    models: dict[str, dict[str, Any]] = {
        m: {"requests": [0] * n, "latency": {k: [None] * n for k in ("p50", "p95", "p99")},
            "ttft": {k: [None] * n for k in ("p50", "p95", "p99")}} for m in top}
    for row in rows:
        i = index.get(row["t"])
        m = models.get(row["model"])
        if i is None or m is None:
            continue
        m["requests"][i] = row["requests"]
        for kind in ("latency", "ttft"):
            p = _pcts(row.get(kind))
            for k in ("p50", "p95", "p99"):
                m[kind][k][i] = p[k]
    step = f.step_s
    return {"range": f.describe(), "source": source, "step_s": step, "t": axis, "requests": requests,
            "rps": [round(x / step, 4) for x in requests], "errors": errors,
            "error_rate": [_rate(e, r) for e, r in zip(errors, requests)],
            "client_errors": client, "backend_errors": [e - c for e, c in zip(errors, client)],
            "models": models, "model_order": top}


def usage(fetch: Fetch, f: Filters) -> dict:
    """Requests, tokens in/out and cost by tenant and by model (highest cost first)."""
    source_sql, _, source = _rollup_or_raw(f)
    if source == "rollup":
        aggs = ("toUInt64(countMerge(requests)) AS requests, toUInt64(sumMerge(prompt_tokens)) AS prompt_tokens, "
                "toUInt64(sumMerge(completion_tokens)) AS completion_tokens, sumMerge(cost_usd) AS cost_usd")
        model_col = "model"
    else:
        aggs = ("count() AS requests, sum(toUInt64(prompt_tokens)) AS prompt_tokens, "
                "sum(toUInt64(completion_tokens)) AS completion_tokens, sum(ifNull(cost_usd, 0)) AS cost_usd")
        model_col = "model_requested"
    out: dict[str, Any] = {"range": f.describe(), "source": source}
    for key, col in (("by_tenant", "tenant"), ("by_model", model_col)):
        rows = fetch(f"""SELECT {col} AS name, {aggs}
{source_sql}
GROUP BY name ORDER BY cost_usd DESC, requests DESC, name LIMIT 100""", f.params())
        for row in rows:
            row["cost_usd"] = round(row["cost_usd"] or 0.0, 6)
        out[key] = rows
    return out


def cache(fetch: Fetch, f: Filters) -> dict:
    """Cache outcomes (hit, semantic_hit, miss, coalesced, bypass; ``none``: refused before the
    cache), the hit ratio among looked-up requests ((hit + semantic_hit) / (hit + semantic_hit +
    miss + coalesced)), the time hits of either kind saved, and the ratio per bucket."""
    p = f.params()
    rows = fetch(f"""SELECT cache_status AS status, count() AS requests, sum(ifNull(cache_saved_ms, 0)) AS saved_ms
FROM llm_requests WHERE {f.raw_where()} GROUP BY status""", p)
    by = {r["status"]: r for r in rows}
    n = {s: (by.get(s) or {}).get("requests", 0)
         for s in ("hit", "semantic_hit", "miss", "coalesced", "bypass", "none")}
    hits = n["hit"] + n["semantic_hit"]
    looked_up = hits + n["miss"] + n["coalesced"]
    series = fetch(f"""SELECT {_bucket(f, "ts_start")} AS t, countIf(cache_status IN ('hit', 'semantic_hit')) AS hits,
    countIf(cache_status IN ('hit', 'semantic_hit', 'miss', 'coalesced')) AS looked_up
FROM llm_requests WHERE {f.raw_where()} GROUP BY t ORDER BY t""", p)
    axis = bucket_starts(f)
    index = {t: i for i, t in enumerate(axis)}
    ratio: list[float | None] = [None] * len(axis)
    for row in series:
        i = index.get(row["t"])
        if i is not None and row["looked_up"]:
            ratio[i] = round(row["hits"] / row["looked_up"], 4)
    saved = sum((by.get(s) or {}).get("saved_ms") or 0.0 for s in ("hit", "semantic_hit"))
    return {"range": f.describe(), "source": "raw", "requests": sum(r["requests"] for r in rows),
            "by_status": {s: c for s, c in sorted((r["status"], r["requests"]) for r in rows)},
            "hits": n["hit"], "semantic_hits": n["semantic_hit"], "misses": n["miss"], "coalesced": n["coalesced"],
            "bypassed": n["bypass"], "not_reached": n["none"],
            "hit_ratio": round(hits / looked_up, 4) if looked_up else None,
            "saved_ms": round(saved, 1), "t": axis, "hit_ratio_series": ratio}


def backends(fetch: Fetch, f: Filters) -> dict:
    """Per backend: requests, errors (client / backend), latency percentiles of successful
    requests (rollup or raw rows), and upstream attempts with their failures from
    ``llm_attempts`` (retries and fallbacks included)."""
    source_sql, aggs, source = _rollup_or_raw(f, fetch)
    rows = fetch(f"SELECT backend, {aggs}\n{source_sql}\nGROUP BY backend ORDER BY requests DESC, backend", f.params())
    conds = ["a.ts_start >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC')",
             "a.ts_start < fromUnixTimestamp64Milli({to_ms:Int64}, 'UTC')"]
    if f.tenant:
        conds.append("a.tenant = {tenant:String}")
    if f.model:
        conds.append("a.model_requested = {model:String}")
    if f.backend:
        conds.append("a.backend = {backend:String}")
    if f.prompt:  # attempts carry no prompt: keep those of the matching requests
        conds.append(f"a.request_id IN (SELECT request_id FROM llm_requests WHERE {f.raw_where()})")
    attempts = fetch(f"""SELECT a.backend AS backend, count() AS attempts,
    countIf(a.status_code >= 400 OR a.status_code = 0 OR a.error_type != '') AS failed_attempts,
    quantileTDigest(0.95)(a.latency_ms) AS attempt_p95_ms, sum(a.backoff_ms) AS backoff_ms
FROM llm_attempts AS a WHERE {' AND '.join(conds)} GROUP BY backend""", f.params())
    by_attempts = {a["backend"]: a for a in attempts}
    out = []
    for r in rows:
        lat = _pcts(r.get("latency"))
        a = by_attempts.pop(r["backend"], {})
        out.append({"backend": r["backend"], "requests": r["requests"], "errors": r["errors"],
                    "error_rate": _rate(r["errors"], r["requests"]),
                    "client_errors": r["client_errors"], "backend_errors": r["errors"] - r["client_errors"],
                    "p50_ms": lat["p50"], "p95_ms": lat["p95"], "ttft_p50_ms": _pcts(r.get("ttft"))["p50"],
                    "attempts": a.get("attempts", 0), "failed_attempts": a.get("failed_attempts", 0),
                    "attempt_p95_ms": _r(a.get("attempt_p95_ms"))})
    for name, a in sorted(by_attempts.items()):  # tried, never answered
        out.append({"backend": name, "requests": 0, "errors": 0, "error_rate": None, "client_errors": 0,
                    "backend_errors": 0, "p50_ms": None,
                    "p95_ms": None, "ttft_p50_ms": None, "attempts": a["attempts"],
                    "failed_attempts": a["failed_attempts"], "attempt_p95_ms": _r(a.get("attempt_p95_ms"))})
    return {"range": f.describe(), "source": source, "backends": out}


_LIST_COLUMNS = """toString(request_id) AS request_id, client_request_id, toUnixTimestamp64Milli(ts_start) AS ts,
    tenant, model_requested AS model, backend, status_code, error_type,
    substring(error_message, 1, 300) AS error_message, round(latency_ms, 1) AS latency_ms,
    round(ttft_ms, 1) AS ttft_ms, prompt_tokens, completion_tokens, cost_usd, prompt_id, prompt_version,
    stream, finish_reason, cache_status, attempts"""


def request_list(fetch: Fetch, f: Filters, kind: str, limit: int = 20) -> dict:
    """``slowest`` (highest latency first) or ``failed`` (status ≥ 400, newest first) requests."""
    if kind not in ("slowest", "failed"):
        raise ValueError("kind must be slowest or failed")
    limit = max(1, min(int(limit), LIST_LIMIT_MAX))
    where = f.raw_where() + (" AND status_code >= 400" if kind == "failed" else "")
    order = "latency_ms DESC, ts_start DESC" if kind == "slowest" else "ts_start DESC"
    rows = fetch(f"SELECT {_LIST_COLUMNS}\nFROM llm_requests WHERE {where}\nORDER BY {order} LIMIT {{limit:UInt32}}",
                 {**f.params(), "limit": limit})
    return {"range": f.describe(), "kind": kind, "requests": rows}


def request_detail(fetch: Fetch, request_id: str, ts_ms: int | None = None) -> dict | None:
    """One request's row (every column; bodies when logged), its attempts and its feedback.
    ``request_id``: the row's UUID or the client's own id; ``ts_ms`` (optional) narrows the scan
    to ±1 h around that time. ``None`` when no row matches."""
    params: dict[str, Any] = {"id": request_id}
    near = ""
    if ts_ms is not None:
        params["ts"] = int(ts_ms)
        near = (" AND ts_start >= fromUnixTimestamp64Milli({ts:Int64} - 3600000, 'UTC')"
                " AND ts_start < fromUnixTimestamp64Milli({ts:Int64} + 3600000, 'UTC')")
    rows = fetch(f"""SELECT *, toUnixTimestamp64Milli(ts_start) AS ts
FROM llm_requests WHERE (request_id = toUUIDOrZero({{id:String}}) OR client_request_id = {{id:String}}){near}
ORDER BY ts_start DESC LIMIT 1""", params)
    if not rows:
        return None
    row = rows[0]
    uuid = row["request_id"]
    attempts = fetch("""SELECT attempt, toUnixTimestamp64Milli(ts_start) AS ts, backend, provider, model, status_code,
    error_type, round(latency_ms, 1) AS latency_ms, round(ttft_ms, 1) AS ttft_ms, backoff_ms
FROM llm_attempts WHERE request_id = toUUID({id:String}) ORDER BY attempt""", {"id": uuid})
    feedback = fetch("""SELECT toString(feedback_id) AS feedback_id, toUnixTimestamp64Milli(ts) AS ts, score, label,
    comment
FROM llm_feedback WHERE request_id = toUUID({id:String}) ORDER BY ts""", {"id": uuid})
    return {"request": row, "attempts": attempts, "feedback": feedback}


def prompts(fetch: Fetch, f: Filters, labels: dict[tuple[str, int], list[str]] | None = None) -> dict:
    """Prompt versions side by side: requests, error rate, latency, mean tokens, cost, and the
    feedback posted for their requests (count, mean score). ``labels``: each version's labels
    in the config in force (a version keeps a label only while it has it); ``None``: the
    labels its rows in the range were selected through."""
    rows = fetch(f"""WITH fb AS (
    SELECT request_id, sum(score) AS score_sum, count() AS scores FROM llm_feedback
    WHERE request_id IN (SELECT request_id FROM llm_requests WHERE {f.raw_where()} AND prompt_id != '')
    GROUP BY request_id)
SELECT r.prompt_id AS prompt, assumeNotNull(r.prompt_version) AS version,
    arraySort(groupUniqArray(r.prompt_label)) AS labels, count() AS requests,
    countIf(r.status_code >= 400) AS errors,
    quantilesTDigest(0.5, 0.95)(r.latency_ms) AS latency,
    avg(r.prompt_tokens) AS mean_prompt_tokens, avg(r.completion_tokens) AS mean_completion_tokens,
    sum(ifNull(r.cost_usd, 0)) AS cost_usd, sum(fb.scores) AS feedback, sum(fb.score_sum) AS score_sum
FROM llm_requests AS r LEFT JOIN fb ON fb.request_id = r.request_id
WHERE {f.raw_where("r.")} AND r.prompt_id != '' AND r.prompt_version IS NOT NULL
GROUP BY prompt, version ORDER BY prompt, version""", f.params())
    out = []
    for r in rows:
        lat = r.pop("latency") or [None, None]
        score_sum = r.pop("score_sum")
        now = labels.get((r["prompt"], r["version"]), []) if labels is not None else [x for x in r["labels"] if x]
        out.append({**r, "labels": now,
                    "error_rate": round(r["errors"] / r["requests"], 4) if r["requests"] else None,
                    "p50_ms": _r(lat[0]), "p95_ms": _r(lat[1]),
                    "mean_prompt_tokens": _r(r["mean_prompt_tokens"]),
                    "mean_completion_tokens": _r(r["mean_completion_tokens"]),
                    "cost_usd": round(r["cost_usd"] or 0.0, 6),
                    "mean_score": round(score_sum / r["feedback"], 3) if r["feedback"] else None})
    return {"range": f.describe(), "source": "raw", "versions": out}


def adapters(fetch: Fetch, f: Filters) -> dict:
    """LoRA canaries side by side: for each public model a LoRA adapter answered in the range,
    its arms (``base``: the rows no adapter answered; ``<adapter>@<version>``) with requests,
    error rate, latency, mean tokens, cost and feedback (count, mean score)."""
    models = f"SELECT DISTINCT model_requested FROM llm_requests WHERE {f.raw_where()} AND adapter != ''"
    rows = fetch(f"""WITH fb AS (
    SELECT request_id, sum(score) AS score_sum, count() AS scores FROM llm_feedback
    WHERE request_id IN (SELECT request_id FROM llm_requests WHERE {f.raw_where()} AND model_requested IN ({models}))
    GROUP BY request_id)
SELECT r.model_requested AS model,
    if(r.adapter = '', 'base', concat(r.adapter, '@', toString(assumeNotNull(r.adapter_version)))) AS arm,
    count() AS requests, countIf(r.status_code >= 400) AS errors,
    quantilesTDigest(0.5, 0.95)(r.latency_ms) AS latency,
    avg(r.prompt_tokens) AS mean_prompt_tokens, avg(r.completion_tokens) AS mean_completion_tokens,
    sum(ifNull(r.cost_usd, 0)) AS cost_usd, sum(fb.scores) AS feedback, sum(fb.score_sum) AS score_sum
FROM llm_requests AS r LEFT JOIN fb ON fb.request_id = r.request_id
WHERE {f.raw_where("r.")} AND r.model_requested IN ({models})
GROUP BY model, arm ORDER BY model, arm""", f.params())
    out = []
    for r in rows:
        lat = r.pop("latency") or [None, None]
        score_sum = r.pop("score_sum")
        out.append({**r, "error_rate": _rate(r["errors"], r["requests"]), "p50_ms": _r(lat[0]), "p95_ms": _r(lat[1]),
                    "mean_prompt_tokens": _r(r["mean_prompt_tokens"]),
                    "mean_completion_tokens": _r(r["mean_completion_tokens"]),
                    "cost_usd": round(r["cost_usd"] or 0.0, 6),
                    "mean_score": round(score_sum / r["feedback"], 3) if r["feedback"] else None})
    return {"range": f.describe(), "source": "raw", "arms": out}
