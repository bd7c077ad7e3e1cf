"""The token estimate an admission takes from the TPM bucket before the upstream answers.

Cheaper than ``gateway.core.tokens`` on purpose: it runs on the request path for every limited
request, so without a ``TokenCounter`` it counts ~4 characters per token over the prompt's
text (``tokens.prompt_tokens_upper_bound`` is a bound on bytes, a different number) and adds
the request's completion allowance. ``settle`` corrects the bucket with the real usage.
"""

from __future__ import annotations

import orjson


def _text_chars(value) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        total = 0
        for part in value:
            if isinstance(part, str):
                total += len(part)
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    total += len(text)
                elif part.get("content") is not None:  # an Anthropic tool_result: what the tool read
                    total += _text_chars(part["content"])
                elif isinstance(part.get("input"), dict):  # an Anthropic tool_use: its arguments
                    total += len(orjson.dumps(part["input"]))
                elif part.get("output") is not None:  # a Responses function_call_output: what the tool read
                    total += _text_chars(part["output"])
                elif isinstance(part.get("arguments"), str):  # a Responses function_call
                    total += len(part["arguments"])
                else:
                    total += 340  # images and the like: ~85 tokens
            elif isinstance(part, int):
                total += 4  # a token id
            elif isinstance(part, list):
                total += _text_chars(part)
        return total
    return 0


def estimate_tokens(endpoint: str, body: dict, default_max_tokens: int | None, counter=None) -> int:
    """Tokens a request may use: its prompt (``counter``: a ``TokenCounter`` for tiktoken, else
    ~4 characters per token) plus ``max_completion_tokens`` / ``max_tokens`` / ``max_output_tokens`` (or
    ``default_max_tokens``) times ``n``; ``default_max_tokens=None``: the prompt alone."""
    model = body.get("model") or ""
    if counter is not None:
        prompt = counter.count_prompt(endpoint, body, model)
    elif endpoint in ("chat/completions", "messages"):  # Anthropic's: the same, with a `system` field
        chars, messages = _text_chars(body.get("system")), body.get("messages") or ()
        for m in messages:
            if isinstance(m, dict):
                chars += _text_chars(m.get("content"))
                if m.get("tool_calls"):
                    chars += len(orjson.dumps(m["tool_calls"]))
        if body.get("tools"):
            chars += len(orjson.dumps(body["tools"]))
        prompt = chars // 4 + 3 * len(messages) + 3
    elif endpoint == "responses":  # instructions, then input: a string, or items (messages, tool calls, outputs)
        items = body.get("input")
        items = items if isinstance(items, list) else [items]
        chars = _text_chars(body.get("instructions")) + _text_chars(items)
        if body.get("tools"):
            chars += len(orjson.dumps(body["tools"]))
        prompt = chars // 4 + 3 * len(items) + 3
    else:
        prompt = _text_chars(body.get("prompt") if endpoint == "completions" else body.get("input")) // 4 + 1
    if default_max_tokens is not None and endpoint in ("chat/completions", "completions", "messages", "responses"):
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
        if not isinstance(limit, int) or limit <= 0:
            limit = default_max_tokens
        n = body.get("n")
        return prompt + limit * (n if isinstance(n, int) and 0 < n <= 128 else 1)
    return prompt
