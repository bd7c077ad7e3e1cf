-- Two models side by side over the same window (e.g. a base model and its fine-tuned
-- replacement, served as one more backend): requests, error rate, p50/p95 latency and TTFT
-- (ms), mean tokens, cost (USD) and the feedback posted to /v1/feedback (count, mean score).
-- `prompt` narrows to one prompt (empty: all). Compares model_requested; use served=1 to
-- compare by the model the backend reported (model_served) instead.
-- params: model_a=, model_b=, prompt=, hours=168, served=0
WITH feedback AS (
    SELECT request_id, sum(score) AS score_sum, count() AS scores
    FROM llm_feedback
    GROUP BY request_id
)
SELECT
    if({served:UInt8} = 1, r.model_served, r.model_requested) AS model,
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
WHERE if({served:UInt8} = 1, r.model_served, r.model_requested) IN ({model_a:String}, {model_b:String})
  AND ({prompt:String} = '' OR r.prompt_id = {prompt:String})
  AND r.ts_start >= now64(3) - INTERVAL {hours:UInt32} HOUR
GROUP BY model
ORDER BY model
