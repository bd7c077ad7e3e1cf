"""Custom (freeform) tools of the Responses API, for backends that speak only Chat Completions.

A custom tool takes free text instead of JSON arguments — Codex gives GPT-5 models its
``apply_patch`` that way. Chat has no such tool, so the backend gets a function of the same name
taking one string, ``input`` (the tool's grammar, if any, cannot be told and is left out); the
backend's calls of it are told back as ``custom_tool_call`` items carrying that string, and
``custom_tool_call`` / ``custom_tool_call_output`` items of the input go back to the backend as
its tool call and tool message.
"""

from __future__ import annotations

from typing import Any

import orjson

_PARAMETERS = {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"],
               "additionalProperties": False}


def names(tools: Any) -> frozenset[str]:
    """The names of a request's custom tools."""
    if not isinstance(tools, list):
        return frozenset()
    return frozenset(t["name"] for t in tools if isinstance(t, dict) and t.get("type") == "custom"
                     and isinstance(t.get("name"), str))


def as_function(tool: dict[str, Any]) -> dict[str, Any]:
    """A custom tool as the chat function a backend is offered."""
    function = {"name": tool.get("name", ""), "description": tool.get("description"), "parameters": _PARAMETERS}
    return {"type": "function", "function": {k: v for k, v in function.items() if v is not None}}


def arguments(text: Any) -> str:
    """A custom tool's input as the function's JSON arguments."""
    return orjson.dumps({"input": text if isinstance(text, str) else ""}).decode()


def tool_call(item: dict[str, Any]) -> dict[str, Any]:
    """A ``function_call`` or ``custom_tool_call`` item as the chat tool call a backend reads back."""
    text = item.get("arguments", "") if item.get("type") == "function_call" else arguments(item.get("input"))
    return {"id": item.get("call_id", ""), "type": "function", "function": {"name": item.get("name", ""),
                                                                          "arguments": text}}


def input_of(arguments: str) -> str:
    """The function's arguments back as the custom tool's input (arguments that are not the
    expected object are passed on as they are: the tool's own parser says what is wrong)."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return arguments
    text = value.get("input") if isinstance(value, dict) else None
    return text if isinstance(text, str) else arguments


def call_item(item_id: str, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """A ``custom_tool_call`` output item for the backend's call of the function."""
    return {"id": item_id, "type": "custom_tool_call", "call_id": call_id, "name": name, "input": input_of(arguments)}


__all__ = ["arguments", "as_function", "call_item", "input_of", "names", "tool_call"]
