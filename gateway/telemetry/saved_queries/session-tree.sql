-- One session's requests (x-gateway-session-id; a chain's steps share the chain's session) in
-- time order, with parent ids to draw the tree: model, prompt, status, tokens, cost (USD) and
-- latency (ms) per request. `llm-gateway sessions show ID` prints it as a tree with totals.
-- params: session=
SELECT
    toString(request_id) AS request_id,
    client_request_id,
    parent_request_id,
    ts_start,
    model_requested AS model,
    provider,
    backend,
    prompt_id,
    prompt_version,
    metadata['chain'] AS chain,
    metadata['chain_step'] AS step,
    status_code,
    error_type,
    cache_status,
    prompt_tokens,
    completion_tokens,
    total_tokens,
    cost_usd,
    round(latency_ms, 1) AS latency_ms,
    round(ttft_ms, 1) AS ttft_ms
FROM llm_requests
WHERE session_id = {session:String}
ORDER BY ts_start, request_id
