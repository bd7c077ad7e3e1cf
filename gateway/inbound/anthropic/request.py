"""Anthropic Messages request bodies → OpenAI chat completions bodies (pure, no I/O).

The reverse of ``gateway.providers.anthropic.request``: ``system`` (a string or text blocks) →
a system message; text and image blocks → content parts; assistant ``tool_use`` blocks →
``tool_calls``; ``tool_result`` blocks → ``tool`` messages (before the rest of their user
turn, as OpenAI wants results right after the calls; their images lead that user turn);
``tools``/``tool_choice`` → function tools; ``stop_sequences`` → ``stop``; ``max_tokens``,
``temperature``, ``top_p``, ``top_k`` (``backend_body`` keeps it only for backends that take
it); ``metadata.user_id`` → ``user``;
``thinking`` → ``reasoning_effort`` (a budget in tokens → low/medium/high);
``output_config.format`` → a JSON-schema ``response_format``. What a chat backend cannot do
(server tools, documents, a ``container``) is a 400; Anthropic fields that do not change the
answer (``service_tier``, ``cache_control`` …) are dropped; fields Anthropic does not define
pass through for the backend to judge (vLLM's ``ignore_eos``, ``chat_template_kwargs`` …).
Assistant ``thinking`` blocks sent back are dropped (chat backends take no reasoning in the
history).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.errors import InvalidRequestError

# Anthropic request fields translated below, or dropped as meaningless to a chat backend; any
# other field is not Anthropic's and passes through.
_TRANSLATED = frozenset({"model", "messages", "max_tokens", "system", "temperature", "top_p", "top_k",
                         "stop_sequences", "tools", "tool_choice", "metadata", "thinking", "output_config", "stream",
                         "container", "mcp_servers"})
_DROPPED = frozenset({"cache_control", "diagnostics", "inference_geo", "service_tier", "speed", "user_profile_id",
                      "workspace_id", "billing_policy", "compaction", "context_management", "fallback_credit_token",
                      "fallbacks", "thread", "betas"})
# Backend types that take ``top_k`` (OpenAI's API refuses unknown fields).
_TOP_K = frozenset({"vllm", "mock"})
# Backend types that read ``max_tokens`` rather than OpenAI's newer ``max_completion_tokens``.
_MAX_TOKENS = frozenset({"vllm"})


def _bad(message: str, param: str | None = None) -> InvalidRequestError:
    return InvalidRequestError(message, param=param)


def _text(block: dict[str, Any], where: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise _bad(f"{where}.text: Input should be a valid string", where)
    return text


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    if not isinstance(source, dict):
        source = {}
    kind = source.get("type")
    if kind == "base64" and isinstance(source.get("data"), str) and isinstance(source.get("media_type"), str):
        url = f"data:{source['media_type']};base64,{source['data']}"
    elif kind == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise _bad(f"{where}.source: an image is a base64 or url source for this model's backend.", where)
    return {"type": "image_url", "image_url": {"url": url}}


def _parts(content: Any, where: str, allow_images: bool) -> list[dict[str, Any]]:
    """Text (and image) blocks → chat content parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}: Input should be a valid string or list of content blocks", where)
    parts = []
    for j, block in enumerate(content):
        at = f"{where}.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, at)})
        elif kind == "image" and allow_images:
            parts.append(_image_part(block, at))
        else:
            raise _bad(f"{at}: content block type {kind!r} is not supported here by this model's backend.", at)
    return parts


def _plain(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text-only parts as one string (what every chat backend takes); else the parts."""
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _tool_result(block: dict[str, Any], where: str, images: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``tool`` message. Its images (Claude Code reads image files with a tool) go to
    ``images``, for the user message that follows: a chat ``tool`` message holds text only."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{where}.tool_use_id: Field required", where)
    content = block.get("content")
    parts = [] if content is None else _parts(content, f"{where}.content", allow_images=True)
    images.extend(p for p in parts if p["type"] != "text")
    text = _plain([p for p in parts if p["type"] == "text"])
    if block.get("is_error") is True:
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _user(content: Any, where: str, out: list[dict[str, Any]]) -> None:
    if isinstance(content, str):
        out.append({"role": "user", "content": content})
        return
    if not isinstance(content, list):
        raise _bad(f"{where}: Input should be a valid string or list of content blocks", where)
    rest: list[Any] = []
    images: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        if isinstance(block, dict) and block.get("type") == "tool_result":
            out.append(_tool_result(block, f"{where}.{j}", images))
        else:
            rest.append(block)
    if rest or images:
        out.append({"role": "user", "content": _plain(images + _parts(rest, where, allow_images=True))})


def _assistant(content: Any, where: str, out: list[dict[str, Any]]) -> None:
    if isinstance(content, str):
        out.append({"role": "assistant", "content": content})
        return
    if not isinstance(content, list):
        raise _bad(f"{where}: Input should be a valid string or list of content blocks", where)
    texts, calls = [], []
    for j, block in enumerate(content):
        at = f"{where}.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _bad(f"{at}: a tool_use block needs an id and a name", at)
            if block.get("input") is not None and not isinstance(block["input"], dict):
                raise _bad(f"{at}.input: Input should be a valid dictionary", f"{at}.input")
            calls.append({"id": block["id"], "type": "function",
                          "function": {"name": block["name"],
                                       "arguments": orjson.dumps(block.get("input") or {}).decode()}})
        elif kind not in ("thinking", "redacted_thinking"):
            raise _bad(f"{at}: content block type {kind!r} is not supported here by this model's backend.", at)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    out.append(message)


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("tools: Input should be a valid list", "tools")
    out = []
    for j, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom") or "input_schema" not in tool:
            raise _bad(f"tools.{j}: only custom tools (name, input_schema) are supported by this model's backend.",
                       f"tools.{j}")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            problem = "Field required" if name is None else "Input should be a valid string" if \
                not isinstance(name, str) else "String should have at least 1 character"
            raise _bad(f"tools.{j}.name: {problem}", f"tools.{j}.name")
        fn: dict[str, Any] = {"name": name, "parameters": tool["input_schema"]}
        if tool.get("description"):
            fn["description"] = tool["description"]
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any, chat: dict[str, Any]) -> None:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "auto":
        chat["tool_choice"] = "auto"
    elif kind == "any":
        chat["tool_choice"] = "required"
    elif kind == "none":
        chat["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif isinstance(choice, dict):
        raise _bad("tool_choice: Input should be auto, any, tool or none", "tool_choice")
    else:
        raise _bad("tool_choice: Input should be a valid dictionary", "tool_choice")
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        chat["parallel_tool_calls"] = False


def _effort(thinking: Any) -> str | None:
    """``thinking`` → ``reasoning_effort`` (None: thinking off)."""
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "disabled" or thinking is None:
        return None
    if kind == "adaptive":
        return "medium"
    budget = thinking.get("budget_tokens") if kind == "enabled" else None
    if not isinstance(budget, int):
        raise _bad("thinking: Input should be enabled (with budget_tokens), adaptive or disabled", "thinking")
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages body → a chat completions body (a new dict). Raises ``InvalidRequestError``."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _bad("messages: Field required" if messages is None else "messages: Input should be a valid list",
                   "messages")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        raise _bad("max_tokens: Field required" if max_tokens is None else "max_tokens: Input should be a valid "
                   "integer", "max_tokens")
    if max_tokens < 1:
        raise _bad("max_tokens: Input should be greater than or equal to 1", "max_tokens")
    for name in ("container", "mcp_servers"):
        if body.get(name) is not None:
            raise _bad(f"{name}: not supported by this model's backend.", name)
    out: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        out.append({"role": "system", "content": _plain(_parts(system, "system", allow_images=False))})
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            _user(message.get("content"), f"{where}.content", out)
        elif role == "assistant":
            _assistant(message.get("content"), f"{where}.content", out)
        else:
            raise _bad(f"{where}.role: Input should be 'user' or 'assistant'", f"{where}.role")
    chat: dict[str, Any] = {"model": body.get("model"), "messages": out, "max_tokens": max_tokens}
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            chat[name] = body[name]
    stop = body.get("stop_sequences")
    if stop is not None and not isinstance(stop, list):
        raise _bad("stop_sequences: Input should be a valid list", "stop_sequences")
    for j, sequence in enumerate(stop or ()):
        if not isinstance(sequence, str):
            raise _bad(f"stop_sequences.{j}: Input should be a valid string", f"stop_sequences.{j}")
    if stop:
        chat["stop"] = stop
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        choice: dict[str, Any] = {}
        _tool_choice(body["tool_choice"], choice)  # checked even among no tools, as Anthropic does
        if "tools" in chat:  # OpenAI refuses a choice among no tools
            chat.update(choice)
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _bad("metadata: Input should be a valid dictionary", "metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        chat["user"] = metadata["user_id"]
    effort = _effort(body.get("thinking"))
    config = body.get("output_config")
    if isinstance(config, dict):
        effort = config.get("effort") or effort
        fmt = config.get("format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            chat["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": fmt.get("schema") or {}}}
    if effort is not None:
        chat["reasoning_effort"] = {"xhigh": "high", "max": "high"}.get(effort, effort)
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # the answer's usage, for message_delta and the row
    for name, value in body.items():  # not Anthropic's: the backend's own extensions
        if name not in _TRANSLATED and name not in _DROPPED:
            chat[name] = value
    return chat


def backend_body(chat: dict[str, Any], backend_type: str, model: str) -> dict[str, Any]:
    """``chat`` as a target of ``backend_type`` serving ``model`` takes it."""
    out = {**chat, "model": model}
    if backend_type not in _TOP_K:
        out.pop("top_k", None)
    if backend_type not in _MAX_TOKENS:
        out["max_completion_tokens"] = out.pop("max_tokens")
    if backend_type not in ("openai", "azure"):
        out.pop("reasoning_effort", None)  # vLLM and the mock take no effort; reasoning models think anyway
    return out
