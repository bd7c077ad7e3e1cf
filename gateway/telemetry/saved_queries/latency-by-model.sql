-- Latency and time-to-first-token percentiles (ms) by requested model over the last `minutes`
-- (default 60); `since_ms` (Unix ms, default 0) narrows it further, e.g. to one demo run.
-- params: minutes=60, since_ms=0
SELECT
    model_requested AS model,
    count() AS requests,
    countIf(status_code >= 400) AS errors,
    round(quantile(0.5)(latency_ms), 1) AS p50_ms,
    round(quantile(0.95)(latency_ms), 1) AS p95_ms,
    round(quantile(0.99)(latency_ms), 1) AS p99_ms,
    round(quantileIf(0.5)(ttft_ms, stream AND ttft_ms IS NOT NULL), 1) AS ttft_p50_ms,
    round(quantileIf(0.95)(ttft_ms, stream AND ttft_ms IS NOT NULL), 1) AS ttft_p95_ms,
    round(quantileIf(0.99)(ttft_ms, stream AND ttft_ms IS NOT NULL), 1) AS ttft_p99_ms
FROM llm_requests
WHERE ts_start >= now64(3) - INTERVAL {minutes:UInt32} MINUTE
  AND ts_start >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC')
GROUP BY model
ORDER BY requests DESC, model
