"""A request body that names ``model`` twice.

JSON parsers disagree on duplicate keys: ours keeps the last ``"model"``, others keep the first.
A body like ``{"model": "allowed", "model": "other"}`` would then be authorised for one model
while a backend that reads the client's forwarded bytes serves the other. Such bodies are
refused. The check is nearly free: only a body whose bytes hold ``"model"`` twice, or a
``\\u006…`` escape (how the letters of ``model`` could be spelled inside a key), is parsed again,
with a parser that reports every key.

Some parsers also match keys regardless of case (Go's ``encoding/json``, as in Ollama, LocalAI
and many OpenAI-compatible proxies; ASP.NET's web defaults), so ``{"model": "allowed", "Model":
"other"}`` is a duplicate too: ``other_model_key`` finds such a key among the parsed top-level keys.
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


def other_model_key(body: dict) -> bool:
    """True when the top-level ``body`` has a key other than ``model`` that reads ``model``
    regardless of case (``Model``, ``MODEL``, also spelled with escapes)."""
    return any(len(key) == 5 and key != "model" and key.lower() == "model" for key in body)
