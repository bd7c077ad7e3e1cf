"""The request checks the mock backend makes before answering, with OpenAI's 400 errors.

An application tested against the mock should meet the same refusals it would meet from the
API for the common mistakes: no or empty ``messages``, a message with an unknown ``role`` or
without its ``content``, an ``n``, ``temperature`` or ``top_logprobs`` out of range, a
``tool_choice`` naming no offered tool, a ``json_object`` response format whose messages never
say "JSON". Messages and codes follow
OpenAI's (``invalid_request_error``, ``param`` naming the field). Checks are a few dict
lookups: the mock also serves load tests.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.errors import type_name

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_ROLE_LIST = "'system', 'assistant', 'user', 'function', 'tool', and 'developer'"
_CONTENT_REQUIRED = frozenset({"system", "developer", "user", "tool"})  # an assistant's may be tool calls only


def error_body(message: str, param: str | None, code: str | None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                   "code": code}})


def check_chat(body: dict[str, Any]) -> bytes | None:
    """The 400 body for a chat completion request the API would refuse, or ``None``."""
    messages = body.get("messages")
    if messages is None:
        return error_body("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    if not isinstance(messages, list):
        return error_body(f"Invalid type for 'messages': expected an array of objects, but got "
                          f"{type_name(messages)} instead.", "messages", "invalid_type")
    if not messages:
        return error_body("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an "
                          "empty array instead.", "messages", "empty_array")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return error_body(f"Invalid type for 'messages[{i}]': expected an object, but got "
                              f"{type_name(message)} instead.", f"messages[{i}]", "invalid_type")
        role = message.get("role")
        if role not in _ROLES:
            if role is None:
                return error_body(f"Missing required parameter: 'messages[{i}].role'.", f"messages[{i}].role",
                                  "missing_required_parameter")
            shown = f"'{role}'" if isinstance(role, str) else orjson.dumps(role).decode()
            return error_body(f"Invalid value: {shown}. Supported values are: {_ROLE_LIST}.",
                              f"messages[{i}].role", "invalid_value")
        if role in _CONTENT_REQUIRED and "content" not in message:
            return error_body(f"Missing required parameter: 'messages[{i}].content'.", f"messages[{i}].content",
                              "missing_required_parameter")
    return _check_common(body) or _check_tools(body) or _check_format(body, messages)


def check_completion(body: dict[str, Any]) -> bytes | None:
    """The 400 body for a legacy completion request the API would refuse, or ``None``."""
    if "prompt" not in body:
        return error_body("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
    return _check_common(body)


def _check_common(body: dict[str, Any]) -> bytes | None:
    n = body.get("n")
    if n is not None:
        if not isinstance(n, int) or isinstance(n, bool):
            return error_body(f"Invalid type for 'n': expected an integer, but got {type_name(n)} instead.",
                              "n", "invalid_type")
        if n < 1:
            return error_body(f"Invalid 'n': integer below minimum value. Expected a value >= 1, but got {n} "
                              "instead.", "n", "integer_below_minimum")
        if n > 128:
            return error_body(f"Invalid 'n': integer above maximum value. Expected a value <= 128, but got {n} "
                              "instead.", "n", "integer_above_maximum")
    temperature = body.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool) and not 0 <= temperature <= 2:
        above = temperature > 2
        return error_body(f"Invalid 'temperature': decimal {'above maximum' if above else 'below minimum'} value. "
                          f"Expected a value {'<= 2' if above else '>= 0'}, but got {temperature} instead.",
                          "temperature", "decimal_above_maximum" if above else "decimal_below_minimum")
    top = body.get("top_logprobs")
    if top is not None:
        if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= 20:
            return error_body(f"Invalid 'top_logprobs': expected an integer between 0 and 20, but got "
                              f"{orjson.dumps(top).decode()} instead.", "top_logprobs", "invalid_value")
        if body.get("logprobs") is not True and "messages" in body:
            return error_body("Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
                              "'top_logprobs' is specified.", "top_logprobs", "invalid_value")
    return None


def function_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``function`` objects of the request's function tools, in order."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return []
    return [t["function"] for t in tools
            if isinstance(t, dict) and t.get("type", "function") == "function" and isinstance(t.get("function"), dict)
            and isinstance(t["function"].get("name"), str)]


def chosen_name(choice: Any) -> str | None:
    """The function a ``tool_choice`` object names (``{"type": "function", "function": {"name"}}``)."""
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return function["name"]
        if isinstance(choice.get("name"), str):
            return choice["name"]
    return None


def _check_tools(body: dict[str, Any]) -> bytes | None:
    choice = body.get("tool_choice")
    if choice is None:
        return None
    tools = function_tools(body)
    if not body.get("tools"):
        return error_body("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
                          "specified.", "tool_choice", None)
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            return error_body(f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and 'required'.",
                              "tool_choice", "invalid_value")
        return None
    name = chosen_name(choice)
    if name is None:
        return None  # other tool_choice shapes (allowed_tools, custom): answered as auto
    if not any(t["name"] == name for t in tools):
        return error_body(f"Invalid value for 'tool_choice': tool choice '{name}' not found in 'tools' "
                          "parameter.", "tool_choice", None)
    return None


def _check_format(body: dict[str, Any], messages: list) -> bytes | None:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_object":
        return None
    for message in messages:
        content = message.get("content")
        text = content if isinstance(content, str) else orjson.dumps(content).decode() if content else ""
        if "json" in text.lower():
            return None
    return error_body("'messages' must contain the word 'json' in some form, to use 'response_format' of type "
                      "'json_object'.", "messages", None)
