"""A Responses API request as a Chat Completions request, for backends that speak only chat.

``to_chat(body, history)`` maps ``instructions`` (a system message, which ``developer`` and
``system`` items join wherever they come), ``input`` (a string, or
items: messages with ``input_text``/``input_image``/``input_file`` parts, earlier assistant
output, ``function_call`` and ``function_call_output`` items, and their ``custom_tool_call``
counterparts), function and custom ``tools`` (``custom``: freeform tools as functions) and
``tool_choice``, ``text.format`` (``response_format``), ``reasoning.effort``,
``max_output_tokens``, sampling, ``user``, ``stream``, and ``prompt_cache_key`` and
``safety_identifier`` for OpenAI-type backends (``backend_body``). ``history``: the chat messages of the
conversation so far (``previous_response_id``), placed after the instructions — the previous
turn's instructions are not carried over, as OpenAI does. What chat cannot express (built-in
tools, stored items by reference, background runs) is refused with a 400 naming the field.
"""

from __future__ import annotations

from typing import Any

from gateway.core.errors import InvalidRequestError, type_name
from gateway.inbound.responses import custom

# Copied as they are: the same name and meaning in both APIs.
_SAME = ("temperature", "top_p", "parallel_tool_calls", "user")
# Fields of OpenAI's own service that its Chat Completions takes too (prompt caching, abuse
# tracking): sent only to OpenAI-type backends (``backend_body``). vLLM would ignore them, with a
# warning in its log for every request; the Anthropic adapter drops them.
_OPENAI_ONLY = ("prompt_cache_key", "safety_identifier")
_OPENAI_TYPES = frozenset({"openai", "azure"})
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def _refuse(what: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(f"{what} is not supported for this model: its backend speaks only Chat Completions.",
                               param=param, code="unsupported_parameter")


def _invalid_type(param: str, expected: str, value: Any) -> InvalidRequestError:
    return InvalidRequestError(f"Invalid type for '{param}': expected {expected}, but got {type_name(value)} instead.",
                               param=param, code="invalid_type")


def _missing(param: str) -> InvalidRequestError:
    return InvalidRequestError(f"Missing required parameter: '{param}'.", param=param,
                               code="missing_required_parameter")


def _check_types(body: dict[str, Any]) -> None:
    """Refuse, as OpenAI does, settings of the wrong type that would otherwise be read as absent."""
    for name in ("text", "reasoning", "metadata"):
        if body.get(name) is not None and not isinstance(body[name], dict):
            raise _invalid_type(name, "an object", body[name])
    fmt = body["text"].get("format") if isinstance(body.get("text"), dict) else None
    if fmt is not None and not isinstance(fmt, dict):
        raise _invalid_type("text.format", "an object", fmt)
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise _invalid_type("stream", "a boolean", body["stream"])


def _string(part: dict[str, Any], key: str, param: str) -> str:
    """A part's text field (absent: empty); any other type is the client's error, as OpenAI says."""
    value = part.get(key, "")
    if not isinstance(value, str):
        raise InvalidRequestError(f"Invalid type for '{param}.{key}': expected a string.", param=f"{param}.{key}")
    return value


def _text(content: Any, param: str) -> str:
    """Text of a tool output or of output parts (a string, or ``*_text`` parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_string(p, "text", f"{param}[{i}]") for i, p in enumerate(content)
                       if isinstance(p, dict) and "text" in p)
    raise InvalidRequestError(f"Invalid '{param}': expected a string or a list of text parts.", param=param)


def _part(part: Any, param: str) -> dict[str, Any]:
    """One content part of an input message as a chat content part."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
        return {"type": "text", "text": _string(part, "text", param)}
    if kind == "refusal":
        return {"type": "text", "text": _string(part, "refusal", param)}
    if kind == "input_image":
        if not part.get("image_url"):
            raise _refuse("An input_image given by file_id", f"{param}.file_id")
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        file = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k)}
        if part.get("file_url") or not file:
            raise _refuse("An input_file given by URL", f"{param}.file_url")
        return {"type": "file", "file": file}
    raise _refuse(f"Content part type {kind!r}", f"{param}.type")


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    role = _ROLES.get(item.get("role", ""))
    if role is None:
        raise InvalidRequestError(f"Invalid '{param}.role': {item.get('role')!r}.", param=f"{param}.role")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise InvalidRequestError(f"Invalid '{param}.content': expected a string or a list.", param=f"{param}.content")
    parts = [_part(p, f"{param}.content[{i}]") for i, p in enumerate(content)]
    if role != "user" or all(p["type"] == "text" for p in parts):  # plain text: what every backend reads
        return {"role": role, "content": "".join(p["text"] for p in parts if p["type"] == "text")}
    return {"role": role, "content": parts}


def input_messages(value: Any) -> list[dict[str, Any]]:
    """``input`` (a string or a list of items) as chat messages."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise InvalidRequestError("Invalid 'input': expected a string or a list of items.", param="input")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        param = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequestError(f"Invalid '{param}': expected an object.", param=param)
        kind = item.get("type", "message")
        if kind == "message":
            out.append(_message(item, param))
        elif kind in ("function_call", "custom_tool_call"):
            call = custom.tool_call(item)
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and isinstance(last.get("content"), str | None):
                last.setdefault("tool_calls", []).append(call)  # one assistant turn, several calls
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind in ("function_call_output", "custom_tool_call_output"):
            if not isinstance(item.get("call_id"), str) or not item["call_id"]:
                raise _missing(f"{param}.call_id")
            out.append({"role": "tool", "tool_call_id": item["call_id"],
                        "content": _text(item.get("output", ""), f"{param}.output")})
        elif kind == "reasoning":
            continue  # the model's own reasoning: chat backends take none back
        else:
            raise _refuse(f"Input item type {kind!r}", f"{param}.type")
    return out


def _tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind in ("function", "custom") and (not isinstance(tool.get("name"), str) or not tool["name"]):
            raise _missing(f"tools[{i}].name")
        if kind == "custom":
            out.append(custom.as_function(tool))
            continue
        if kind != "function":
            raise _refuse(f"Tool type {kind!r}", f"tools[{i}].type")
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
        if not isinstance(choice.get("name"), str) or not choice["name"]:
            raise _missing("tool_choice.name")
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _refuse(f"tool_choice {choice!r}", "tool_choice")


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        schema = {k: fmt[k] for k in ("name", "description", "schema", "strict") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    raise _refuse(f"text.format type {fmt['type']!r}", "text.format.type")


def _system_first(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every system message — the instructions, and ``developer``/``system`` items wherever the
    input (or the conversation so far) had them, as Codex sends them mid-conversation — joined
    in order into one leading system message: many chat templates (vLLM's for Llama, Qwen,
    Mistral …) refuse a system message anywhere else, and Anthropic takes system text only in
    ``system``. The position of a later one is lost; its words still come before the turns."""
    system = [m for m in messages if m["role"] == "system"]
    if not system or len(system) == 1 and messages[0] is system[0]:
        return messages
    text = "\n\n".join(m["content"] for m in system if m["content"])  # (always text here)
    return [{"role": "system", "content": text}, *(m for m in messages if m["role"] != "system")]


def to_chat(body: dict[str, Any], history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The chat completions body for a Responses request ``body`` (``model`` kept as given)."""
    for field in ("background", "conversation", "prompt"):
        if body.get(field):
            raise _refuse(f"'{field}'", field)
    _check_types(body)
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, (str, list)):
        raise InvalidRequestError("Invalid 'instructions': expected a string or a list of items.",
                                  param="instructions")
    if instructions:
        messages.append({"role": "system", "content": instructions} if isinstance(instructions, str)
                        else _message({"role": "system", "content": instructions}, "instructions"))
    messages += history or ()
    messages += input_messages(body.get("input", []))
    messages = _system_first(messages)
    if not messages:  # nothing to answer (the chat backend would blame `messages`)
        raise InvalidRequestError("Missing required parameter: 'input'.", param="input",
                                  code="missing_required_parameter")
    limit = body.get("max_output_tokens")
    if limit is not None and (type(limit) is not int or limit < 1):
        raise InvalidRequestError("Invalid 'max_output_tokens': expected an integer of at least 1.",
                                  param="max_output_tokens")
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise InvalidRequestError("Invalid 'tools': expected an array of tools.", param="tools")
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    for field in (*_SAME, *_OPENAI_ONLY):
        if body.get(field) is not None:
            chat[field] = body[field]
    if body.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    if body.get("tools"):
        chat["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    fmt = _response_format(body.get("text"))
    if fmt is not None:
        chat["response_format"] = fmt
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        chat["reasoning_effort"] = reasoning["effort"]
    if body.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def backend_body(chat: dict[str, Any], backend_type: str, model: str) -> dict[str, Any]:
    """``chat`` as a target of ``backend_type`` serving ``model`` takes it."""
    out = {**chat, "model": model}
    if backend_type not in _OPENAI_TYPES:
        for field in _OPENAI_ONLY:
            out.pop(field, None)
    return out
