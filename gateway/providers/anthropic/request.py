"""OpenAI chat completions request bodies → Anthropic Messages request bodies (pure, no I/O).

Fields with no Anthropic meaning that do not change the answer are dropped, features Anthropic
cannot honour raise ``InvalidRequestError`` (400), fields OpenAI does not define pass through.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from gateway.core.errors import InvalidRequestError

# OpenAI request fields with no Anthropic counterpart that do not change the answer: dropped.
_DROPPED = frozenset({"model", "stream_options", "seed", "store", "metadata", "service_tier", "prompt_cache_key",
                      "safety_identifier", "reasoning_effort", "verbosity"})
# OpenAI request fields translated below (everything else not in _DROPPED passes through).
_TRANSLATED = frozenset({"messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
                         "stream", "tools", "tool_choice", "parallel_tool_calls", "user", "n", "logprobs",
                         "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty",
                         "response_format", "functions", "function_call", "audio", "modalities",
                         "prediction", "web_search_options"})
_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)(?P<params>(?:;[^,;]*)*),(?P<data>.*)", re.DOTALL)


def _unsupported(what: str, param: str | None = None) -> InvalidRequestError:
    return InvalidRequestError(f"{what} is not supported by Anthropic backends.", param=param)


def _check_unsupported(body: dict[str, Any]) -> None:
    """Raise ``InvalidRequestError`` for OpenAI features Anthropic cannot honour."""
    n = body.get("n")
    if n is not None and n != 1:
        raise _unsupported(f"n={n} (several choices per request); send n=1 or omit it", "n")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise _unsupported("logprobs / top_logprobs", "logprobs")
    if body.get("logit_bias"):
        raise _unsupported("logit_bias", "logit_bias")
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name):
            raise _unsupported(f"{name} (other than 0)", name)
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        raise _unsupported(f"response_format {fmt.get('type')!r} (ask for JSON in the prompt, or define a tool "
                           "whose parameters are the schema)", "response_format")
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise _unsupported("The legacy `functions`/`function_call` API (use `tools`/`tool_choice`)", "functions")
    modalities = body.get("modalities")
    if body.get("audio") is not None or (isinstance(modalities, list) and "audio" in modalities):
        raise _unsupported("Audio output", "audio")
    for name in ("prediction", "web_search_options"):
        if body.get(name) is not None:
            raise _unsupported(name, name)


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    """An OpenAI ``image_url`` part → an Anthropic ``image`` block (base64 data URL or URL)."""
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str):
        raise InvalidRequestError(f"{where}.image_url.url must be a string.", param=where)
    if url.startswith("data:"):
        m = _DATA_URL.match(url)
        if not m or ";base64" not in m["params"]:
            raise InvalidRequestError(f"{where}: an image data URL must be base64 (data:image/png;base64,...).",
                                      param=where)
        source = {"type": "base64", "media_type": m["type"], "data": m["data"]}
    elif url.startswith(("http://", "https://")):
        source = {"type": "url", "url": url}
    else:
        raise InvalidRequestError(f"{where}: image URLs must be http(s) or base64 data URLs.", param=where)
    return {"type": "image", "source": source}


def _file_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    """An OpenAI ``file`` part with inline ``file_data`` (a base64 PDF) → a ``document`` block."""
    spec = f if isinstance(f := part.get("file"), dict) else {}
    m = _DATA_URL.match(spec.get("file_data") or "")
    if not m or ";base64" not in m["params"]:
        raise _unsupported(f"{where}: files other than inline base64 data (file_id)", where)
    block: dict[str, Any] = {"type": "document", "source": {"type": "base64", "media_type": m["type"],
                                                             "data": m["data"]}}
    if spec.get("filename"):
        block["title"] = spec["filename"]
    return block


def _content_blocks(content: Any, where: str, allow_media: bool) -> list[dict[str, Any]]:
    """OpenAI message content (a string or a list of parts) → Anthropic content blocks.

    ``cache_control`` on a part is kept (Anthropic prompt caching). Empty text is skipped.
    """
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where} must be a string or an array of content parts.", param=where)
    blocks = []
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise InvalidRequestError(f"{at}.{kind} must be a string.", param=at)
            if not text:
                continue
            block: dict[str, Any] = {"type": "text", "text": text}
        elif kind == "image_url" and allow_media:
            block = _image_block(part, at)
        elif kind == "file" and allow_media:
            block = _file_block(part, at)
        elif kind == "input_audio":
            raise _unsupported(f"{at}: audio input", at)
        else:
            raise InvalidRequestError(f"{at}: content part type {kind!r} is not supported here by Anthropic "
                                      "backends.", param=at)
        if "cache_control" in part:
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _tool_use_blocks(tool_calls: Any, where: str) -> list[dict[str, Any]]:
    """Assistant ``tool_calls`` → ``tool_use`` blocks (arguments parsed from their JSON string)."""
    if not isinstance(tool_calls, list):
        raise InvalidRequestError(f"{where} must be an array.", param=where)
    blocks = []
    for j, call in enumerate(tool_calls):
        at = f"{where}[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequestError(f"{at} must be a function call with a name.", param=at)
        args = fn.get("arguments") or "{}"
        try:
            parsed = orjson.loads(args) if isinstance(args, str) else args
        except orjson.JSONDecodeError:
            raise InvalidRequestError(f"{at}.function.arguments is not valid JSON.", param=at) from None
        if not isinstance(parsed, dict):
            raise InvalidRequestError(f"{at}.function.arguments must be a JSON object.", param=at)
        blocks.append({"type": "tool_use", "id": call.get("id") or f"call_{j}", "name": fn["name"],
                       "input": parsed})
    return blocks


def _tool_result_block(message: dict[str, Any], where: str) -> dict[str, Any]:
    """A ``tool`` message → a ``tool_result`` block."""
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequestError(f"{where}.tool_call_id is required for tool messages.", param=where)
    content = message.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        block["content"] = content
    else:
        block["content"] = _content_blocks(content, f"{where}.content", allow_media=True)
    return block


def _append_turn(turns: list[dict[str, Any]], role: str, content: str | list[dict[str, Any]]) -> None:
    """Append a turn, merging it into the previous one when the role repeats (Anthropic
    alternates user and assistant turns; all tool results of one step share a user turn)."""
    if turns and turns[-1]["role"] == role:
        prev = turns[-1]["content"]
        prev = [{"type": "text", "text": prev}] if isinstance(prev, str) else prev
        turns[-1]["content"] = prev + ([{"type": "text", "text": content}] if isinstance(content, str) else content)
    else:
        turns.append({"role": role, "content": content})


def translate_messages(messages: list[Any]) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """OpenAI ``messages`` → ``(system, messages)`` for Anthropic.

    ``system``: None, a string (one plain text), or a list of text blocks. Raises
    ``InvalidRequestError`` naming the offending ``messages[i]`` path.
    """
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequestError(f"{where} must be an object.", param=where)
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.extend(_content_blocks(content, f"{where}.content", allow_media=False))
        elif role == "user":
            _append_turn(turns, "user", content if isinstance(content, str) and content
                         else _content_blocks(content, f"{where}.content", True))
        elif role == "assistant":
            blocks = _content_blocks(content, f"{where}.content", allow_media=False)
            calls = message.get("tool_calls")
            if calls:
                blocks += _tool_use_blocks(calls, f"{where}.tool_calls")
            if blocks:
                _append_turn(turns, "assistant", content if isinstance(content, str) and not calls else blocks)
        elif role == "tool":
            _append_turn(turns, "user", [_tool_result_block(message, where)])
        else:
            raise InvalidRequestError(f"{where}.role {role!r} is not supported by Anthropic backends.",
                                      param=f"{where}.role")
    if not system:
        return None, turns
    if len(system) == 1 and len(system[0]) == 2:  # one plain text block
        return system[0]["text"], turns
    return system, turns


def translate_tools(tools: Any) -> list[dict[str, Any]]:
    """OpenAI function tools → Anthropic tools (``input_schema`` from ``parameters``)."""
    if not isinstance(tools, list):
        raise InvalidRequestError("tools must be an array.", param="tools")
    out = []
    for j, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _unsupported(f"tools[{j}]: tools other than functions", f"tools[{j}]")
        item: dict[str, Any] = {"name": fn["name"]}
        if fn.get("description"):
            item["description"] = fn["description"]
        item["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
        if "cache_control" in tool:
            item["cache_control"] = tool["cache_control"]
        out.append(item)
    return out


def translate_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    """``tool_choice`` + ``parallel_tool_calls`` → Anthropic ``tool_choice`` (None: leave unset)."""
    out: dict[str, Any] | None
    if choice is None:
        out = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise InvalidRequestError(f"tool_choice {choice!r} is not supported by Anthropic backends.",
                                  param="tool_choice")
    if out is not None and parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def translate_request(body: dict[str, Any], model: str, default_max_tokens: int) -> dict[str, Any]:
    """An OpenAI chat completions body → an Anthropic Messages body (a new dict).

    ``model``: the upstream model. Raises ``InvalidRequestError`` for unsupported features.
    """
    _check_unsupported(body)
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequestError("'messages' must be an array of message objects.", param="messages")
    system, turns = translate_messages(messages)
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    out: dict[str, Any] = {"model": model, "max_tokens": default_max_tokens if max_tokens is None else max_tokens}
    if system is not None:
        out["system"] = system
    out["messages"] = turns
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = body.get("tools")
    if tools:
        out["tools"] = translate_tools(tools)
        choice = translate_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice is not None:
            out["tool_choice"] = choice
    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if body.get("stream") is True:
        out["stream"] = True
    for name, value in body.items():  # fields OpenAI does not define: Anthropic-native extensions
        if name not in _TRANSLATED and name not in _DROPPED:
            out[name] = value
    return out
