-- Bias monitoring: per segment (`by`: metadata with `key`, tenant, user, api_key_id,
-- user_agent, experiment_arm, model, backend) requests, errors (status >= 400), answered
-- requests, refusals among them (finish_reason content_filter, the row's refusal flag, or
-- `refusal_pattern`, an RE2 regex, matching the logged response body), and the count, sum and
-- sum of squares of completion tokens and latency (ms) of answered requests. `llm-gateway bias`
-- and the dashboard's Bias panel test these for disparities. Window: `from_ms`..`to_ms` (epoch
-- ms), else the last `hours`; `model`, `prompt` (+ `version`), `tenant`, `backend` narrow it;
-- the calls of `eval run` (metadata eval_run) only with `eval_runs=1`.
-- params: by=tenant, key=, model=, prompt=, version=0, tenant=, backend=, hours=168, from_ms=0, to_ms=0, refusal_pattern=, eval_runs=0
SELECT
    multiIf({by:String} = 'metadata', metadata[{key:String}], {by:String} = 'tenant', toString(tenant),
            {by:String} = 'user', user, {by:String} = 'api_key_id', api_key_id,
            {by:String} = 'user_agent', user_agent, {by:String} = 'experiment_arm', toString(experiment_arm),
            {by:String} = 'model', toString(model_requested), {by:String} = 'backend', toString(backend),
            '') AS segment,
    count() AS requests,
    countIf(status_code >= 400) AS errors,
    countIf(status_code < 400) AS answered,
    countIf(status_code < 400 AND (finish_reason = 'content_filter' OR refusal
            OR ({refusal_pattern:String} != '' AND match(response_body, {refusal_pattern:String})))) AS refusals,
    sumIf(toFloat64(completion_tokens), status_code < 400) AS output_sum,
    sumIf(pow(toFloat64(completion_tokens), 2), status_code < 400) AS output_sumsq,
    sumIf(latency_ms, status_code < 400) AS latency_sum,
    sumIf(pow(latency_ms, 2), status_code < 400) AS latency_sumsq
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
GROUP BY segment
ORDER BY requests DESC, segment
LIMIT 1000
