-- Error rate by backend over the last `minutes` (default 60): requests answered with HTTP >= 400
-- (499: the client went away), the most common error type, and upstream attempts from
-- llm_attempts (retries and fallbacks included).
-- params: minutes=60
SELECT
    r.backend AS backend,
    r.requests AS requests,
    r.errors AS errors,
    round(r.errors / r.requests, 4) AS error_rate,
    r.top_error AS top_error,
    a.attempts AS attempts,
    a.failed_attempts AS failed_attempts
FROM
(
    SELECT backend, count() AS requests, countIf(status_code >= 400) AS errors,
           topKIf(1)(error_type, error_type != '')[1] AS top_error
    FROM llm_requests
    WHERE ts_start >= now64(3) - INTERVAL {minutes:UInt32} MINUTE
    GROUP BY backend
) AS r
LEFT JOIN
(
    SELECT backend, count() AS attempts, countIf(status_code >= 400 OR status_code = 0) AS failed_attempts
    FROM llm_attempts
    WHERE ts_start >= now64(3) - INTERVAL {minutes:UInt32} MINUTE
    GROUP BY backend
) AS a ON a.backend = r.backend
ORDER BY error_rate DESC, requests DESC, backend
