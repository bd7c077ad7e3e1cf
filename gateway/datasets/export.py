"""Export logged chat traffic as OpenAI chat fine-tuning JSONL.

``Exporter(options).run(fetch, train, validation)`` reads rows page by page (keyset paging
on ``(ts_start, request_id)``, ``options.page_size`` rows at a time, so memory stays flat
whatever the table holds), filters, redacts and deduplicates them, and writes one JSON line
per example to ``train`` (or to ``validation`` for the held-out share). ``fetch(sql, params)``
returns rows as dicts (``gateway.cli.sessions.RowSource.rows``). The returned ``Report`` counts
rows read, written and skipped by reason.

Formats: ``openai-chat`` writes exactly what OpenAI's fine-tuning API takes
(``{"messages": [...]}`` plus ``tools`` / ``parallel_tool_calls`` when the request had them);
``jsonl`` adds the row's provenance (request id, time, model, prompt version, feedback score).
A split is deterministic: an example goes to validation when the hash of its content (and
``seed``) falls under ``split``, so re-exporting gives the same split.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id", "function_call", "weight")
_EPOCH = "1970-01-01 00:00:00.000"
_NIL_UUID = "00000000-0000-0000-0000-000000000000"

PAGE_SQL = """
WITH fb AS (
    SELECT request_id, avg(score) AS score, count() AS n
    FROM llm_feedback
    GROUP BY request_id
)
SELECT
    toString(r.request_id) AS request_id,
    toString(r.ts_start) AS ts,
    r.model_requested AS model,
    r.prompt_id AS prompt_id,
    r.prompt_version AS prompt_version,
    r.status_code AS status_code,
    r.stream AS stream,
    r.request_body AS request_body,
    r.response_body AS response_body,
    fb.score AS score,
    fb.n AS feedback_n
FROM llm_requests AS r
LEFT JOIN fb ON fb.request_id = r.request_id
WHERE r.endpoint = 'chat/completions'
  AND r.provider != 'chain'
  AND ({model:String} = '' OR r.model_requested = {model:String})
  AND ({prompt:String} = '' OR r.prompt_id = {prompt:String})
  AND ({prompt_version:Int64} < 0 OR r.prompt_version = {prompt_version:Int64})
  AND r.ts_start >= parseDateTime64BestEffort({since:String}, 3, 'UTC')
  AND r.ts_start < parseDateTime64BestEffort({until:String}, 3, 'UTC')
  AND (r.ts_start, r.request_id) > (parseDateTime64BestEffort({after_ts:String}, 3, 'UTC'), toUUID({after_id:String}))
ORDER BY r.ts_start, r.request_id
LIMIT {page:UInt32}
"""

Fetch = Callable[[str, dict[str, Any]], list[dict]]
Redact = Callable[[str, str], str]


@dataclass
class ExportOptions:
    """What to export. ``prompt_version``: with ``prompt`` (``NAME@3``). ``since``/``until``:
    any date-time ClickHouse parses (``2025-06-01``, ``2025-06-01 12:00:00``), UTC.
    ``status``: ``ok`` (HTTP 200 only) or ``any``. ``min_feedback``: keep rows whose mean
    feedback score is at least this (rows without feedback are skipped). ``split``: share held
    out for validation (0..0.9)."""

    model: str = ""
    prompt: str = ""
    prompt_version: int | None = None
    since: str | None = None
    until: str | None = None
    min_feedback: float | None = None
    status: str = "ok"
    dedupe: bool = False
    limit: int | None = None
    fmt: str = "openai-chat"
    split: float = 0.0
    seed: str = ""
    page_size: int = 500
    redact: Redact | None = None


@dataclass
class Report:
    read: int = 0
    written: int = 0
    validation: int = 0
    skipped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        skipped = ", ".join(f"{why} {n}" for why, n in self.skipped.most_common()) or "none"
        split = f" ({self.written - self.validation} train, {self.validation} validation)" if self.validation else ""
        return f"read {self.read} rows, wrote {self.written} examples{split}; skipped: {skipped}"

    @property
    def bodies_missing(self) -> bool:
        """Every row read lacked its bodies: body logging was off."""
        missing = self.skipped["no_request_body"] + self.skipped["no_response_body"]
        return self.read > 0 and missing == self.read


def validate_example(example: Any) -> list[str]:
    """Problems of one OpenAI chat fine-tuning example (empty: valid)."""
    if not isinstance(example, dict):
        return ["a line must be a JSON object"]
    messages = example.get("messages")
    if not isinstance(messages, list) or not messages:
        return ["messages must be a non-empty list"]
    problems = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            problems.append(f"messages[{i}]: role must be one of {', '.join(sorted(ROLES))}")
            continue
        if m["role"] == "assistant":
            if m.get("content") is None and not m.get("tool_calls") and not m.get("function_call"):
                problems.append(f"messages[{i}]: an assistant message needs content or tool_calls")
        elif m.get("content") is None and m["role"] != "tool":
            problems.append(f"messages[{i}]: content is missing")
    if isinstance(messages[-1], dict) and messages[-1].get("role") != "assistant":
        problems.append("the last message must be the assistant's")
    if "tools" in example and not isinstance(example["tools"], list):
        problems.append("tools must be a list")
    return problems


def _clean_message(m: dict) -> dict:
    return {k: m[k] for k in _MESSAGE_KEYS if k in m and m[k] is not None}


def assistant_message(response_body: str, streamed: bool) -> dict | None:
    """The assistant message of a logged answer: a chat completion's ``choices[0].message``
    (content, tool calls), or a streamed answer's text (logged as the assembled text)."""
    text = response_body.strip()
    if text.startswith("{"):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            try:
                message = parsed["choices"][0]["message"]
            except (KeyError, IndexError, TypeError):
                return None if not streamed else {"role": "assistant", "content": response_body}
            if not isinstance(message, dict):
                return None
            out: dict[str, Any] = {"role": "assistant"}
            if message.get("content") is not None:
                out["content"] = message["content"]
            if message.get("tool_calls"):
                out["tool_calls"] = [{k: v for k, v in call.items() if k in ("id", "type", "function")}
                                     for call in message["tool_calls"] if isinstance(call, dict)]
            if message.get("function_call"):
                out["function_call"] = message["function_call"]
            return out if len(out) > 1 else None
    if streamed and text:
        return {"role": "assistant", "content": response_body}
    return None


def _redact_message(m: dict, kind: str, redact: Redact) -> dict:
    content = m.get("content")
    if isinstance(content, str):
        m["content"] = redact(kind, content)
    elif isinstance(content, list):
        m["content"] = [{**p, "text": redact(kind, p["text"])} if isinstance(p, dict) and isinstance(p.get("text"), str)
                        else p for p in content]
    calls = m.get("tool_calls")
    if isinstance(calls, list):
        out = []
        for call in calls:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                call = {**call, "function": {**fn, "arguments": redact(kind, fn["arguments"])}}
            out.append(call)
        m["tool_calls"] = out
    return m


class Exporter:
    """One export run (see the module docstring)."""

    def __init__(self, options: ExportOptions):
        self.o = options
        self.report = Report()
        self._seen: set[bytes] = set()

    def _params(self, after_ts: str, after_id: str) -> dict[str, Any]:
        o = self.o
        return {"model": o.model, "prompt": o.prompt,
                "prompt_version": o.prompt_version if o.prompt_version is not None else -1,
                "since": o.since or "1970-01-01 00:00:00", "until": o.until or "2200-01-01 00:00:00",
                "after_ts": after_ts, "after_id": after_id, "page": o.page_size}

    def example(self, row: dict) -> tuple[dict | None, str]:
        """``(example, "")`` for a usable row, else ``(None, why)``."""
        o = self.o
        if o.status == "ok" and int(row.get("status_code") or 0) != 200:
            return None, "status"
        if o.min_feedback is not None:
            if not int(row.get("feedback_n") or 0):
                return None, "no_feedback"
            if float(row.get("score") or 0.0) < o.min_feedback:
                return None, "low_feedback"
        if not row.get("request_body"):
            return None, "no_request_body"
        if not row.get("response_body"):
            return None, "no_response_body"
        try:
            body = orjson.loads(row["request_body"])
        except orjson.JSONDecodeError:
            return None, "unparseable_request"  # e.g. cut at telemetry.bodies.max_bytes
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return None, "unparseable_request"
        messages = [_clean_message(m) for m in body["messages"] if isinstance(m, dict)]
        answer = assistant_message(row["response_body"], bool(row.get("stream")))
        if answer is None:
            return None, "unparseable_response"
        if o.redact is not None:
            messages = [_redact_message(m, "request", o.redact) for m in messages]
            answer = _redact_message(answer, "response", o.redact)
        example: dict[str, Any] = {"messages": messages + [answer]}
        if isinstance(body.get("tools"), list) and body["tools"]:
            example["tools"] = body["tools"]
            if isinstance(body.get("parallel_tool_calls"), bool):
                example["parallel_tool_calls"] = body["parallel_tool_calls"]
        if validate_example(example):
            return None, "invalid_example"
        return example, ""

    def run(self, fetch: Fetch, train: IO[bytes], validation: IO[bytes] | None = None) -> Report:
        o = self.o
        rep = self.report
        after_ts, after_id = _EPOCH, _NIL_UUID
        while True:
            rows = fetch(PAGE_SQL, self._params(after_ts, after_id))
            for row in rows:
                rep.read += 1
                example, why = self.example(row)
                if example is None:
                    rep.skipped[why] += 1
                    continue
                canonical = orjson.dumps(example, option=orjson.OPT_SORT_KEYS)
                digest = hashlib.sha256(canonical).digest()
                if o.dedupe:
                    if digest in self._seen:
                        rep.skipped["duplicate"] += 1
                        continue
                    self._seen.add(digest)
                if o.fmt == "jsonl":
                    line = {"request_id": row["request_id"], "ts": row["ts"], "model": row["model"],
                            "prompt_id": row.get("prompt_id") or None, "prompt_version": row.get("prompt_version"),
                            "feedback_score": row.get("score") if int(row.get("feedback_n") or 0) else None,
                            **example}
                    data = orjson.dumps(line)
                else:
                    data = orjson.dumps(example)
                out = train
                if o.split > 0 and validation is not None:
                    point = int.from_bytes(hashlib.sha256(o.seed.encode() + digest).digest()[:8], "big") / 2**64
                    if point < o.split:
                        out = validation
                        rep.validation += 1
                out.write(data + b"\n")
                rep.written += 1
                if o.limit is not None and rep.written >= o.limit:
                    return rep
            if len(rows) < o.page_size:
                return rep
            after_ts, after_id = rows[-1]["ts"], rows[-1]["request_id"]
