"""A request body that names ``model`` twice.

JSON parsers disagree on duplicate keys: ours keeps the last ``"model"``, others keep the first.
A body like ``{"model": "allowed", "model": "other"}`` would then be authorised for one model
while a backend that reads the client's forwarded bytes serves the other. Such bodies are
refused. The check is nearly free: only a body whose bytes hold ``"model"`` twice, or a
``\\u006…`` escape (how the letters of ``model`` could be spelled inside a key), is parsed again,
with a parser that reports every key.

Some parsers also match keys regardless of case (Go's ``encoding/json``, as in Ollama, LocalAI
and many OpenAI-compatible proxies; ASP.NET's web defaults). To them ``{"model": "allowed",
"Model": "other"}`` names ``model`` twice, and ``{"stream": false, "Stream": true}`` streams an
answer the gateway meters as a JSON one, while ``"Messages"`` would carry text the policy plugins
never read. ``case_variant_key`` finds a top-level key that is another case of a field the
gateway or its plugins read.
"""

from __future__ import annotations

import json

_KEY = b'"model"'
_ESCAPE = b"\\u006"  # \u006d \u006f \u0064 \u0065 \u006c: m, o, d, e, l escaped


def duplicated_model(raw: bytes) -> bool:
    """True when the top-level object of the JSON ``raw`` has more than one ``model`` key."""
    if raw.count(_KEY) < 2 and _ESCAPE not in raw:
        return False
    counts: list[int] = []

    def pairs(items: list) -> None:
        counts.append(sum(1 for key, _ in items if key == "model"))

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except ValueError:
        return False
    return bool(counts) and counts[-1] > 1  # the outermost object is reported last


# Top-level request fields the gateway (routing, limits, usage) or its policy plugins read.
READ_FIELDS = frozenset({
    "model", "stream", "stream_options", "n", "max_tokens", "max_completion_tokens", "max_output_tokens",
    "messages", "prompt", "suffix", "input", "instructions", "system", "tools", "functions",
    "response_format", "text", "chat_template", "chat_template_kwargs", "metadata",
})


def case_variant_key(body: dict) -> str | None:
    """The first top-level key of ``body`` that is another case of a field in ``READ_FIELDS``
    (``Model``, ``STREAM``, ``Messages``; also spelled with escapes), or ``None``."""
    for key in body:
        if key not in READ_FIELDS and key.lower() in READ_FIELDS:
            return key
    return None
