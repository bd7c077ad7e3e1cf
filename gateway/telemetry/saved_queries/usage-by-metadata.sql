-- Usage by the value of one caller metadata key (`key`, default "team"; from the
-- x-gateway-metadata header or the body's `metadata`) over the last `days` (default 7).
-- Requests without that key are grouped under '(none)'.
-- params: key=team, days=7
SELECT
    if(mapContains(metadata, {key:String}), metadata[{key:String}], '(none)') AS value,
    count() AS requests,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    round(sum(cost_usd), 6) AS cost_usd,
    round(quantile(0.95)(latency_ms), 1) AS p95_ms
FROM llm_requests
WHERE ts_start >= now64(3) - INTERVAL {days:UInt32} DAY
GROUP BY value
ORDER BY requests DESC, value
