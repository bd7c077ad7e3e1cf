-- Tokens and cost (USD) by tenant per day over the last `days` (default 30). `unpriced` counts
-- answered requests (status < 400) whose model has no price (their cost is NULL and not in
-- `total_cost_usd`); refused and failed requests used nothing and are not counted there, nor
-- are requests that name no model (files, batches: nothing to price).
-- params: days=30
SELECT
    toDate(ts_start) AS day,
    tenant,
    count() AS requests,
    sum(prompt_tokens) AS prompt_tokens,
    sum(completion_tokens) AS completion_tokens,
    sum(cached_tokens) AS cached_tokens,
    countIf(tokens_estimated = 1) AS estimated,
    round(sum(cost_usd), 6) AS total_cost_usd,
    countIf(cost_usd IS NULL AND status_code < 400 AND model_requested != '') AS unpriced
FROM llm_requests
WHERE ts_start >= now64(3) - INTERVAL {days:UInt32} DAY
GROUP BY day, tenant
ORDER BY day DESC, total_cost_usd DESC, tenant
