-- Prompt versions side by side over the last `hours` (default 168): requests, error rate,
-- p50/p95 latency (ms), mean prompt and completion tokens, cost (USD), and the feedback posted
-- to /v1/feedback (count and mean score). `prompt` picks one prompt (empty: every prompt).
-- params: prompt=, hours=168
WITH feedback AS (
    SELECT request_id, sum(score) AS score_sum, count() AS scores
    FROM llm_feedback
    GROUP BY request_id
)
SELECT
    r.prompt_id AS prompt,
    r.prompt_version AS version,
    count() AS requests,
    round(countIf(r.status_code >= 400) / count(), 4) AS error_rate,
    round(quantileExactInclusive(0.5)(r.latency_ms), 1) AS p50_ms,
    round(quantileExactInclusive(0.95)(r.latency_ms), 1) AS p95_ms,
    round(avg(r.prompt_tokens), 1) AS mean_prompt_tokens,
    round(avg(r.completion_tokens), 1) AS mean_completion_tokens,
    round(sum(r.cost_usd), 6) AS cost_usd,
    sum(f.scores) AS feedback,
    round(sum(f.score_sum) / nullIf(sum(f.scores), 0), 3) AS mean_score
FROM llm_requests AS r
LEFT JOIN feedback AS f ON f.request_id = r.request_id
WHERE r.prompt_id != ''
  AND ({prompt:String} = '' OR r.prompt_id = {prompt:String})
  AND r.ts_start >= now64(3) - INTERVAL {hours:UInt32} HOUR
GROUP BY prompt, version
ORDER BY prompt, version
