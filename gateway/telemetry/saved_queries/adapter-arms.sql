-- The arms of one public model side by side: the base model and each LoRA adapter version
-- that answered (llm_requests.adapter, adapter_version; e.g. a sticky weighted canary):
-- requests, error rate, p50/p95 latency and TTFT (ms), mean tokens, cost (USD) and the
-- feedback posted to /v1/feedback (count, mean score). Arm 'base' is every row no adapter answered.
-- params: model=, hours=168
WITH feedback AS (
    SELECT request_id, sum(score) AS score_sum, count() AS scores
    FROM llm_feedback
    GROUP BY request_id
)
SELECT
    if(r.adapter = '', 'base', concat(r.adapter, '@', toString(r.adapter_version))) AS arm,
    count() AS requests,
    round(countIf(r.status_code >= 400) / count(), 4) AS error_rate,
    round(quantileExactInclusive(0.5)(r.latency_ms), 1) AS p50_ms,
    round(quantileExactInclusive(0.95)(r.latency_ms), 1) AS p95_ms,
    round(quantileExactInclusive(0.5)(ifNull(r.ttft_ms, 0)), 1) AS p50_ttft_ms,
    round(avg(r.prompt_tokens), 1) AS mean_prompt_tokens,
    round(avg(r.completion_tokens), 1) AS mean_completion_tokens,
    round(sum(r.cost_usd), 6) AS cost_usd,
    sum(f.scores) AS feedback,
    round(sum(f.score_sum) / nullIf(sum(f.scores), 0), 3) AS mean_score
FROM llm_requests AS r
LEFT JOIN feedback AS f ON f.request_id = r.request_id
WHERE r.model_requested = {model:String}
  AND r.ts_start >= now64(3) - INTERVAL {hours:UInt32} HOUR
GROUP BY arm
ORDER BY arm
