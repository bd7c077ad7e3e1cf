-- Per-minute rollups from the materialized view (llm_requests_1m): requests, errors, latency and
-- TTFT percentiles (t-digest), tokens and cost by model, for the last `minutes` (default 60).
-- Cheap at any volume: it reads the AggregatingMergeTree, not the raw rows.
-- params: minutes=60
SELECT
    minute,
    model,
    countMerge(requests) AS requests,
    sumMerge(errors) AS errors,
    arrayMap(x -> round(x, 1), quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(latency_ms)) AS latency_p50_p90_p95_p99,
    arrayMap(x -> round(x, 1), quantilesTDigestIfMerge(0.5, 0.9, 0.95, 0.99)(ttft_ms)) AS ttft_p50_p90_p95_p99,
    sumMerge(prompt_tokens) AS prompt_tokens,
    sumMerge(completion_tokens) AS completion_tokens,
    round(sumMerge(cost_usd), 6) AS cost_usd
FROM llm_requests_1m
WHERE minute >= toStartOfMinute(now() - INTERVAL {minutes:UInt32} MINUTE)
GROUP BY minute, model
ORDER BY minute DESC, model
