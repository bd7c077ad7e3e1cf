-- Bias monitoring of feedback: the scores posted to /v1/feedback for the requests of the window,
-- per segment of the request (`by`, `key` as in bias-segments; `by=none`: one segment '') and
-- per `rater` (the feedback's rater, '' when none was given): count, sum and sum of squares.
-- `llm-gateway bias` (the feedback check) and `llm-gateway bias --raters` test these. The calls of
-- `eval run` (metadata eval_run) count only with `eval_runs=1`.
-- params: by=none, key=, model=, prompt=, version=0, tenant=, backend=, hours=168, from_ms=0, to_ms=0, eval_runs=0
SELECT
    r.segment AS segment,
    f.rater AS rater,
    count() AS n,
    sum(f.score) AS score_sum,
    sum(pow(f.score, 2)) AS score_sumsq
FROM llm_feedback AS f
INNER JOIN (
    SELECT request_id,
        multiIf({by:String} = 'metadata', metadata[{key:String}], {by:String} = 'tenant', toString(tenant),
                {by:String} = 'user', user, {by:String} = 'api_key_id', api_key_id,
                {by:String} = 'user_agent', user_agent, {by:String} = 'experiment_arm', toString(experiment_arm),
                {by:String} = 'model', toString(model_requested), {by:String} = 'backend', toString(backend),
                '') AS segment
    FROM llm_requests
    WHERE ts_start >= fromUnixTimestamp64Milli(if({from_ms:Int64} > 0, {from_ms:Int64},
                                                  toUnixTimestamp64Milli(now64(3)) - {hours:UInt32} * 3600000), 'UTC')
      AND ts_start < fromUnixTimestamp64Milli(if({to_ms:Int64} > 0, {to_ms:Int64},
                                                 toUnixTimestamp64Milli(now64(3)) + 1000), 'UTC')
      AND ({model:String} = '' OR model_requested = {model:String})
      AND ({prompt:String} = '' OR prompt_id = {prompt:String})
      AND ({version:UInt32} = 0 OR prompt_version = {version:UInt32})
      AND ({tenant:String} = '' OR tenant = {tenant:String})
      AND ({backend:String} = '' OR backend = {backend:String})
      AND ({eval_runs:UInt8} = 1 OR metadata['eval_run'] = '')
) AS r ON f.request_id = r.request_id
GROUP BY segment, rater
ORDER BY n DESC, segment, rater
LIMIT 10000
