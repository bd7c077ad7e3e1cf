"""The objects a request body names below its top level (``gateway.ownership.nested``)."""

from __future__ import annotations

import orjson

from gateway.core.request_body import RequestBody
from gateway.ownership.nested import nested_ids


def _body(data: dict) -> RequestBody:
    return RequestBody(data, orjson.dumps(data))


def test_the_known_shapes_are_walked():
    body = _body({
        "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file-1"},
                                               {"type": "input_image", "file_id": "file-2"}, "text"]},
                  {"type": "function_call_output", "output": "file-not-an-id"}],
        "tools": [{"type": "file_search", "vector_store_ids": ["vs_1", 2]}, {"type": "web_search"}],
        "tool_resources": {"code_interpreter": {"file_ids": ["file-3"]}, "file_search": {"vector_store_ids": ["vs_2"]}},
        "attachments": [{"file_id": "file-4", "tools": []}],
    })
    assert nested_ids(body) == [("input", "file-1"), ("input", "file-2"), ("tools", "vs_1"),
                                ("tool_resources", "file-3"), ("tool_resources", "vs_2"), ("attachments", "file-4")]
    chat = _body({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-5"}}]}]})
    assert nested_ids(chat) == [("messages", "file-5")]
    claude = _body({"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "file", "file_id": "file_6"}},
        {"type": "tool_result", "tool_use_id": "t", "content": [
            {"type": "document", "source": {"type": "file", "file_id": "file_7"}}]}]}]})
    assert nested_ids(claude) == [("messages", "file_6"), ("messages", "file_7")]
    run = _body({"thread": {"messages": [{"role": "user", "content": "x", "attachments": [{"file_id": "file-8"}]}],
                            "tool_resources": {"file_search": {"vector_store_ids": ["vs_3"]}}}})
    assert nested_ids(run) == [("thread", "file-8"), ("thread", "vs_3")]


def test_a_body_that_names_nothing_is_not_walked():
    plain = RequestBody({"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]},
                        b'{"messages": []}')  # bytes without a marker: the parsed body is not read
    assert nested_ids(plain) == []
    escaped = b'{"input": [{"role": "user", "content": [{"type": "input_file", "file\\u005fid": "file-9"}]}]}'
    assert nested_ids(RequestBody(orjson.loads(escaped), escaped)) == [("input", "file-9")]
    changed = RequestBody({"input": [{"content": [{"file_id": "file-1"}]}]})  # a stage's body: always walked
    assert nested_ids(changed) == [("input", "file-1")]
    assert nested_ids(None) == []
