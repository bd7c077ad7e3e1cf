-- The `limit` (default 20) slowest requests of the last `minutes` (default 60), with where the
-- time went: waiting on the upstream vs. in the gateway.
-- params: minutes=60, limit=20
SELECT
    ts_start,
    request_id,
    model_requested AS model,
    backend,
    status_code,
    stream,
    round(latency_ms, 1) AS latency_ms,
    round(ttft_ms, 1) AS ttft_ms,
    round(upstream_latency_ms, 1) AS upstream_ms,
    round(gateway_overhead_ms, 2) AS gateway_ms,
    completion_tokens,
    attempts
FROM llm_requests
WHERE ts_start >= now64(3) - INTERVAL {minutes:UInt32} MINUTE
ORDER BY latency_ms DESC
LIMIT {limit:UInt32}
