"""The stream tee: forward upstream SSE bytes while observing them.

Bytes go to the client one whole event at a time, as soon as the event is complete; beside
that, each event is read once to collect TTFT, chunk arrival times (for ITL), the finish
reason, the served model, usage and the generated text. The tee holds back only the
incomplete tail of an event, never a finished one.

Reading without parsing: the content chunks of a stream differ from one another only in their
text (same id, model, fingerprint, the same nulls). So once a chunk has been parsed, the tee
keeps its bytes before and after the text as a template (``Template``); a later event made of
exactly those bytes around one valid JSON string is that chunk with another text, and only the
string is decoded. Whatever else comes — the first chunk, the finish-reason, usage and error
chunks, tool calls, several choices, an event split across reads — is parsed whole, as before.

Usage: the gateway always asks OpenAI-compatible upstreams for
``stream_options.include_usage``. When the client did not ask for it, ``strip_usage`` drops
the usage-only chunk (``choices: []``) and the ``"usage":null`` member that the option adds to
every other chunk, so the client receives what a direct call would have sent.
"""

from __future__ import annotations

import orjson

from gateway.core.context import RequestContext, Usage
from gateway.core.errors import GatewayError
from gateway.core.sse import SSESplitter, encode_data_event, event_data
from gateway.proxy.stream_template import Template, learn, learnable

_USAGE_NULL = b',"usage":null'
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
_BLANK = b"\n\n"
# How many chunks of a stream may be taken apart to learn a template: the first content chunk,
# and again if the shape changes (a provider that varies a field per chunk); then it stops.
_LEARN_TRIES = 3


class StreamTee:
    """Observe and filter one OpenAI-format SSE stream (chat or text completions).

    ``feed(data, now) -> bytes`` returns the bytes to send to the client for one upstream read
    (``now``: ``perf_counter`` seconds at arrival). ``done`` turns true at ``data: [DONE]``,
    or at ``tail()`` (a clean end) when every choice had finished (see there);
    ``upstream_error`` holds an in-band ``{"error": …}`` payload if the upstream sent one (the
    event is relayed with any run of a configured secret masked, ``SecretMasker.mask_runs``).
    """

    __slots__ = ("_ctx", "_split", "_held", "_strip_usage", "done", "upstream_error", "_template", "_tries",
                 "_choices", "_finished", "_usage_seen")
    END = "every choice finished"  # what a complete stream reaches (named in the truncation error)

    def __init__(self, ctx: RequestContext, strip_usage: bool):
        self._ctx = ctx
        self._split = SSESplitter()
        self._held = False  # whether the splitter holds part of an event (then every read goes through it)
        self._strip_usage = strip_usage
        self.done = False
        self.upstream_error: dict | None = None
        self._template: Template | None = None
        self._tries = _LEARN_TRIES
        self._choices: set[int] = set()  # the choice indices seen (in parsed chunks: a template is
        self._finished: set[int] = set()  # learned from one, so its index is among them) and finished
        self._usage_seen = False

    def feed(self, data: bytes, now: float) -> bytes:
        if self._held:
            return self._feed_split(data, now)
        t = self._template
        if t is not None and data.startswith(t.pre) and data.endswith(t.suf):  # one content chunk, most often
            out = self._templated(t, data, now)
            if out is not None:
                return out
        if not data.endswith(b"\n\n") or b"\r" in data:
            return self._feed_split(data, now)
        # The common reads: whole LF-terminated events, nothing held back. Split here, on the
        # blank lines, exactly where the splitter would; a one-line ``data:`` event is read
        # without the general field parser.
        end = len(data) - 2
        if data.find(b"\n") == end:  # one event of one line
            return self._observe(data, now, data[6:-2] if data.startswith(b"data: ") else None)
        parts = data.split(b"\n\n")
        parts.pop()  # the empty remainder after the last terminator
        kept: list[bytes] = []
        changed = False
        ctx = self._ctx
        strip = self._strip_usage
        texts, times = ctx.completion_text, ctx.chunk_times
        for part in parts:
            t = self._template
            if t is not None and part.startswith(t.pre) and part.endswith(t.body_suf):
                # A burst of content chunks (a fast upstream, a busy loop): ``_templated`` inline,
                # on the part as split, since each costs a few calls on the hottest loop.
                start, end = t.start, len(part) - t.body_after
                try:  # the text with the template's own quotes around it: one JSON string
                    text = _loads(part[start - 1:end + 1]) if end >= start else None
                except _JSONDecodeError:
                    text = None
                if text is not None:
                    if text:
                        texts.append(text)
                        if ctx.t_first_token is None:
                            ctx.t_first_token = now
                        times.append(now)
                    if strip and t.suf_stripped is not None:
                        kept += (part[:end], t.suf_stripped)
                        changed = True
                    elif strip and t.pre_stripped is not None:
                        kept += (t.pre_stripped, part[start:], _BLANK)
                        changed = True
                    else:
                        kept += (part, _BLANK)
                    continue
            raw = part + _BLANK
            keep = self._observe(raw, now, part[6:] if part.startswith(b"data: ") and b"\n" not in part else None)
            if keep is not raw:
                changed = True
            if keep:
                kept.append(keep)
        return b"".join(kept) if changed else data

    def _feed_split(self, data: bytes, now: float) -> bytes:
        events = self._split.feed(data)
        self._held = self._split.pending
        if not events:
            return b""
        kept = []
        changed = False
        for raw in events:
            t = self._template
            keep = self._templated(t, raw, now) if t is not None and raw.startswith(t.pre) and raw.endswith(t.suf) \
                else None
            if keep is None:
                keep = self._observe(raw, now)
            if keep is not raw:
                changed = True
            if keep:
                kept.append(keep)
        if not changed and len(events) == 1:
            return events[0]
        return b"".join(kept)

    @staticmethod
    def error_event(exc: GatewayError) -> bytes:
        """The in-band event that tells the client of a failure the gateway saw: OpenAI's error shape."""
        return encode_data_event(orjson.loads(exc.body()))

    def tail(self) -> bytes:
        """Bytes of an unterminated final event, forwarded as they are when the stream ends.

        The stream ended cleanly here. Without ``[DONE]`` it is still whole (``done``) when
        every choice it started has its finish reason and, if the client asked for usage, the
        usage chunk came: a backend that closes the connection then has sent the whole answer."""
        self._held = False
        finished = self._finished
        if not self.done and finished and finished >= self._choices and (
                self._usage_seen or not self._ctx.client_wants_usage):
            self.done = self._ctx.stream_done = True
        return self._split.tail()

    def _templated(self, t: Template, raw: bytes, now: float) -> bytes | None:
        """``raw`` is the template's bytes around something: when that is one valid JSON string,
        record it as the chunk's text and return the bytes to forward; else None (parse it)."""
        start = t.start
        end = len(raw) - t.after
        if end < start or raw.find(b"\n", start, end) >= 0:  # several events in one read
            return None  # (told apart before ``orjson`` fails: its error is costly to build)
        try:
            text = _loads(raw[start - 1:end + 1])  # the text in the template's own quotes
        except _JSONDecodeError:
            return None
        if text:
            ctx = self._ctx
            ctx.completion_text.append(text)
            if ctx.t_first_token is None:
                ctx.t_first_token = now
            ctx.chunk_times.append(now)
        if not self._strip_usage:
            return raw
        if t.pre_stripped is not None:
            return t.pre_stripped + raw[start:]
        if t.suf_stripped is not None:
            return raw[:end] + t.suf_stripped
        return raw

    def _observe(self, raw: bytes, now: float, data: bytes | None = None) -> bytes:
        """Record what ``raw`` says; return the bytes to forward (``b""`` to drop it).
        ``data``: the event's data when the caller already has it. (Callers try the template first.)"""
        if data is None:
            data = event_data(raw)
        if data is None:
            return raw  # comment / keep-alive
        if data == b"[DONE]":
            self.done = self._ctx.stream_done = True
            return raw
        try:
            chunk = _loads(data)
        except _JSONDecodeError:
            return raw  # not ours to judge; pass it on
        if type(chunk) is not dict:  # orjson makes plain dicts
            return raw
        try:
            return self._read(raw, data, chunk, now)
        except (AttributeError, TypeError):  # a chunk not shaped as OpenAI's: relayed as it came, unread
            return raw

    def _read(self, raw: bytes, data: bytes, chunk: dict, now: float) -> bytes:
        """``_observe`` for a parsed chunk."""
        ctx = self._ctx
        if "error" in chunk:
            secrets = ctx.runtime.secrets if ctx.runtime is not None else None
            if secrets:  # an upstream may echo its key in an error event, whole or in part
                masked = secrets.mask_runs(raw)
                if masked is not raw:
                    raw = masked
                    try:
                        chunk = orjson.loads(event_data(masked) or b"")
                    except orjson.JSONDecodeError:  # the mask cut through the JSON
                        chunk = {"error": {"message": masked.decode("utf-8", "replace")}}
            error = chunk["error"]
            self.upstream_error = error if isinstance(error, dict) else {"message": str(error)}
            return raw
        if not ctx.model_served:
            model = chunk.get("model")
            if model and type(model) is str:
                ctx.model_served = model
                rid = chunk.get("id")
                ctx.response_id = rid if type(rid) is str else ""
        usage = chunk.get("usage")
        choices = chunk.get("choices")
        if usage:
            ctx.usage = Usage.from_openai(usage)
            self._usage_seen = True
        if not choices:
            if usage and self._strip_usage:
                return b""
            return raw
        produced = False
        for choice in choices:
            delta = choice.get("delta")
            if delta is not None:  # chat.completion.chunk
                content = delta.get("content")
                if content and type(content) is str:
                    ctx.completion_text.append(content)
                    produced = True
                elif delta.get("tool_calls") or delta.get("reasoning_content") or delta.get("refusal"):
                    produced = True
                    if type(delta.get("refusal")) is str:
                        ctx.refusal = True
            else:  # text_completion
                text = choice.get("text")
                if text and type(text) is str:
                    ctx.completion_text.append(text)
                    produced = True
            index = choice.get("index", 0)
            if type(index) is not int:  # a malformed index: counted as the first choice
                index = 0
            self._choices.add(index)
            finish = choice.get("finish_reason")
            if finish and type(finish) is str:
                ctx.finish_reason = finish
                self._finished.add(index)
        if produced:
            if ctx.t_first_token is None:
                ctx.t_first_token = now
            ctx.chunk_times.append(now)
        if self._tries and learnable(chunk):
            self._tries -= 1
            template = learn(raw, data, chunk, _USAGE_NULL if self._strip_usage else None)
            if template is not None:
                self._template = template
        if self._strip_usage and usage is None:
            return raw.replace(_USAGE_NULL, b"", 1)  # ``raw`` itself when it has none
        return raw
