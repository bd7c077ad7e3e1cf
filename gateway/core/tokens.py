"""Token counting with tiktoken, for requests whose upstream reported no usage.

Rules (OpenAI's cookbook for chat): each message costs 3 tokens plus its encoded fields, a
``name`` 1 more, and the reply is primed with 3. ``o200k_base`` encodes the gpt-4o family
(gpt-4o, gpt-4.1, gpt-5, o1/o3/o4, chatgpt-4o), ``cl100k_base`` everything else. Image parts
count a flat 85 tokens (a low-detail image); tool definitions and tool calls are counted as
their JSON text.

Both encodings ship with the package (``gateway.encodings``), so counts are exact offline
without any setting; only if the packaged file cannot be used does tiktoken's own loader (its
download and ``TIKTOKEN_CACHE_DIR``) get a try. Encodings load on a helper thread with a time
limit; when they cannot be loaded, counting falls back to ~4 characters per token (still marked
estimated) and retries the load later. Everything here is thread-safe.

On the request path (routing rules on prompt size, context windows, TPM limits estimated with
tiktoken) an encoding is loaded only once a request needs a count the cheap bound
(``prompt_tokens_upper_bound``) cannot settle, and then on a thread (``ready``/``load``): the
two encodings hold ~0.1 GB, which a serving process whose traffic never needs them should not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import orjson

log = logging.getLogger("gateway.tokens")

O200K = "o200k_base"
CL100K = "cl100k_base"
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "chatgpt-4o", "o1", "o3", "o4", "gpt-oss")
_IMAGE_TOKENS = 85
_TEXT_PARTS = ("text", "input_text", "output_text")  # chat's text parts, and the Responses API's
_LOAD_TIMEOUT_S = 15.0
_RETRY_AFTER_S = 600.0


def encoding_name_for(model: str) -> str:
    """``o200k_base`` for gpt-4o-family model names (also ``openai/gpt-4o``), else ``cl100k_base``."""
    name = model.rsplit("/", 1)[-1].lower()
    return O200K if name.startswith(_O200K_PREFIXES) else CL100K


def prompt_tokens_upper_bound(body: dict[str, Any]) -> int:
    """A cheap upper bound (tokens) on a request's prompt tokens, without tokenising.

    Every BPE token covers at least one byte, so a prompt has no more tokens than the bytes of
    its JSON text (which includes every string, escaped); chat adds 3 tokens per message plus
    3, and an image part counts ``_IMAGE_TOKENS`` whatever its URL's length. Routing uses it to
    settle ``min_prompt_tokens`` rules and context-window checks without tiktoken when the bound
    already decides (the common case: short prompts).
    """
    messages = body.get("messages")
    if isinstance(messages, list):
        text = orjson.dumps(messages)
        total = len(text) + 3 * len(messages) + 3 + text.count(b'"image_url"') * _IMAGE_TOKENS
        for extra in ("tools", "system"):  # ``system``: Anthropic's Messages keep it beside the messages
            value = body.get(extra)
            total += len(orjson.dumps(value)) if value else 0
        return total
    value = body.get("prompt", body.get("input"))
    return len(orjson.dumps(value)) if value is not None else 0


class TokenCounter:
    """Counts tokens of prompts and completions.

    ``count_text(text, model) -> int``; ``count_prompt(endpoint, body, model) -> int`` for a
    chat/completions/embeddings request body (a dict). ``exact`` tells whether the last
    encodings were real tiktoken ones (``False`` while falling back to the heuristic).
    """

    def __init__(self, load_timeout_s: float = _LOAD_TIMEOUT_S):
        self._encodings: dict[str, Any] = {}
        self._failed_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._load_timeout_s = load_timeout_s

    # --- encodings -----------------------------------------------------------------
    def ready(self, model: str) -> bool:
        """Whether counting for ``model`` is instant: its encoding is loaded, or failed to load
        lately (the heuristic then answers). Else a count would load it first (~0.1 GB, seconds):
        the request path calls ``load`` on a thread before it counts."""
        name = encoding_name_for(model)
        if name in self._encodings:
            return True
        failed = self._failed_at.get(name)
        return failed is not None and time.monotonic() - failed < _RETRY_AFTER_S

    def load(self, model: str) -> None:
        """Load ``model``'s encoding now (blocking: call it on a thread)."""
        self._encoding(encoding_name_for(model))

    def _encoding(self, name: str):
        enc = self._encodings.get(name)
        if enc is not None:
            return enc
        with self._lock:
            enc = self._encodings.get(name)
            if enc is not None:
                return enc
            failed = self._failed_at.get(name)
            if failed is not None and time.monotonic() - failed < _RETRY_AFTER_S:
                return None
            enc = self._load(name)
            if enc is None:
                self._failed_at[name] = time.monotonic()
            else:
                self._encodings[name] = enc
            return enc

    def _load(self, name: str):
        box: list[Any] = []

        def load() -> None:
            try:
                from gateway.encodings import PackagedEncodingError
                from gateway.encodings import load as load_packaged
                try:
                    box.append(load_packaged(name))
                except PackagedEncodingError as exc:
                    log.warning("packaged tiktoken encoding %s unusable (%s); trying tiktoken's download", name, exc)
                    import tiktoken
                    box.append(tiktoken.get_encoding(name))
            except Exception as exc:  # network, missing cache, missing package
                box.append(exc)

        worker = threading.Thread(target=load, name=f"tiktoken-load-{name}", daemon=True)
        worker.start()
        worker.join(self._load_timeout_s)
        result = box[0] if box else TimeoutError(f"loading took over {self._load_timeout_s:g} s")
        if isinstance(result, Exception):
            log.warning("tiktoken encoding %s unavailable (%s: %s); estimating ~4 characters per token",
                        name, type(result).__name__, result)
            return None
        return result

    # --- counting ------------------------------------------------------------------
    def count_text(self, text: str, model: str) -> int:
        """Tokens of ``text`` in ``model``'s encoding (special-token text counted as plain text)."""
        if not text:
            return 0
        enc = self._encoding(encoding_name_for(model))
        if enc is None:
            return max(1, (len(text) + 3) // 4)
        return len(enc.encode(text, disallowed_special=()))

    def count_chat(self, messages: Iterable[Any], model: str, tools: Any = None) -> int:
        """Prompt tokens of a chat request's ``messages`` (and ``tools``) per OpenAI's rules."""
        total = 3  # every reply is primed with <|start|>assistant<|message|>
        for message in messages:
            if not isinstance(message, dict):
                continue
            total += 3
            for key, value in message.items():
                total += self._value_tokens(value, model)
                if key == "name":
                    total += 1
        if tools:
            total += self.count_text(orjson.dumps(tools).decode(), model)
        return total

    def _value_tokens(self, value: Any, model: str) -> int:
        if value is None:
            return 0
        if isinstance(value, str):
            return self.count_text(value, model)
        if isinstance(value, list):  # content parts, or tool_calls
            total = 0
            for part in value:
                if isinstance(part, dict) and part.get("type") in _TEXT_PARTS and isinstance(part.get("text"), str):
                    total += self.count_text(part["text"], model)
                elif isinstance(part, dict) and part.get("type") in ("image_url", "input_image", "image"):
                    total += _IMAGE_TOKENS
                else:
                    total += self.count_text(orjson.dumps(part).decode(), model)
            return total
        if isinstance(value, (dict, int, float, bool)):
            return self.count_text(orjson.dumps(value).decode(), model)
        return 0

    def count_prompt(self, endpoint: str, body: dict[str, Any] | None, model: str) -> int:
        """Prompt tokens of a request ``body`` for ``endpoint`` (``chat/completions``, Anthropic's
        ``messages`` with its ``system`` field, ``completions``, ``embeddings``, ``responses``; others: 0)."""
        if not isinstance(body, dict):
            return 0
        if endpoint in ("chat/completions", "messages"):  # Anthropic's has its system prompt beside the messages
            messages = body.get("messages")
            total = self.count_chat(messages if isinstance(messages, list) else (), model, body.get("tools"))
            return total + self._value_tokens(body.get("system"), model)
        if endpoint == "responses":  # instructions, then input: a string, or items read as chat messages
            items = body.get("input")
            messages = [{"role": "user", "content": items}] if isinstance(items, str) else \
                items if isinstance(items, list) else []
            instructions = body.get("instructions")
            if isinstance(instructions, str):
                messages = [{"role": "system", "content": instructions}, *messages]
            return self.count_chat(messages, model, body.get("tools"))
        key = "prompt" if endpoint == "completions" else "input" if endpoint == "embeddings" else None
        if key is None:
            return 0
        return self._inputs_tokens(body.get(key), model)

    def _inputs_tokens(self, value: Any, model: str) -> int:
        if isinstance(value, str):
            return self.count_text(value, model)
        if isinstance(value, list):
            if value and all(isinstance(v, int) for v in value):
                return len(value)  # already token ids
            return sum(self._inputs_tokens(v, model) for v in value)
        return 0
