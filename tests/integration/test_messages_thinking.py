"""Thinking blocks made from a chat backend's reasoning carry an empty ``signature`` (the value
Anthropic itself starts a thinking block with; there is nothing to sign). Sent back in the next
turn, as the ``anthropic`` SDK and Claude Code do, they are dropped for a chat backend and, when
the conversation moves onto an Anthropic backend, which refuses unsigned blocks, dropped there
too, while signed ones go as sent."""

from __future__ import annotations

import anthropic
import pytest

from tests.support.fake_upstream import FakeUpstream, chat_chunk, sse_event

MODEL = "claude-sonnet-4-20250514"
USER = [{"role": "user", "content": "Is 7 prime?"}]
THINK = {"type": "enabled", "budget_tokens": 1024}
CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "Yes.", "reasoning_content": "7 has no divisors but 1 and 7."}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}
REASONING = chat_chunk()
REASONING["choices"][0]["delta"] = {"reasoning_content": "7 has no divisors."}
STREAM = [sse_event(chat_chunk(role=True)), sse_event(REASONING), sse_event(chat_chunk("Yes.")),
          sse_event(chat_chunk(finish="stop")), b"data: [DONE]\n\n"]
MESSAGE = {"id": "msg_01", "type": "message", "role": "assistant", "model": MODEL,
           "content": [{"type": "text", "text": "Still yes."}], "stop_reason": "end_turn", "stop_sequence": None,
           "usage": {"input_tokens": 10, "output_tokens": 3}}
SIGNED = {"type": "thinking", "thinking": "Checked by Claude.", "signature": "EqQBCkgIARABGAIiQL"}


@pytest.fixture
def backends(make_gateway):
    with FakeUpstream() as chat, FakeUpstream() as claude:
        gw = make_gateway(f"""
backends:
  claude: {{type: anthropic, base_url: "{claude.url}", api_key: sk-ant-backend}}
  oai: {{type: openai, base_url: "{chat.url}", api_key: sk-oai-backend}}
models:
  claude: {{targets: [{{backend: claude, model: {MODEL}}}]}}
  gpt: {{targets: [{{backend: oai, model: gpt-up}}]}}
""")
        yield anthropic.Anthropic(base_url=gw.url, api_key="k", max_retries=0), chat, claude


def test_unsigned_thinking_is_sent_back_to_a_chat_backend_without_it(backends):
    c, chat, _ = backends
    chat.json(CHAT)
    first = c.messages.create(model="gpt", max_tokens=64, messages=USER, thinking=THINK)
    assert [b.type for b in first.content] == ["thinking", "text"] and first.content[0].signature == ""
    chat.sse(STREAM)
    with c.messages.stream(model="gpt", max_tokens=64, messages=USER, thinking=THINK) as stream:
        streamed = stream.get_final_message()
    assert streamed.content[0].type == "thinking" and streamed.content[0].signature == ""
    for answer in (first, streamed):  # the SDK's own objects sent back, as its docs show for tool use
        chat.json(CHAT)
        again = c.messages.create(model="gpt", max_tokens=64, thinking=THINK, messages=[
            *USER, {"role": "assistant", "content": answer.content}, {"role": "user", "content": "And 9?"}])
        assert again.content[-1].text == "Yes."
        assert chat.last.json()["messages"] == [{"role": "user", "content": "Is 7 prime?"},
                                                {"role": "assistant", "content": "Yes."},
                                                {"role": "user", "content": "And 9?"}]


def test_a_conversation_moved_onto_claude_drops_only_unsigned_thinking(backends):
    c, chat, claude = backends
    chat.json(CHAT)
    first = c.messages.create(model="gpt", max_tokens=64, messages=USER, thinking=THINK)
    claude.json(MESSAGE)
    history = [*USER, {"role": "assistant", "content": [SIGNED, {"type": "text", "text": "Yes."}]},
               {"role": "user", "content": "Sure?"}, {"role": "assistant", "content": first.content},
               {"role": "user", "content": "And 9?"},
               {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": ""}]},
               {"role": "user", "content": "Well?"}]
    for call in (c.messages.create, c.messages.count_tokens):
        claude.json(MESSAGE if call == c.messages.create else {"input_tokens": 30})
        call(model="claude", messages=history, thinking=THINK,
             **({"max_tokens": 64} if call == c.messages.create else {}))
        sent = claude.last.json()["messages"]
        assert sent[1]["content"] == [SIGNED, {"type": "text", "text": "Yes."}]  # signed: as sent
        assert sent[3]["content"] == [{"type": "text", "text": "Yes."}]  # the unsigned block dropped
        assert [m["role"] for m in sent[4:]] == ["user", "user"]  # a turn of nothing else: gone
    claude.json(MESSAGE)
    c.messages.create(model="claude", max_tokens=64, messages=history[:3])  # nothing unsigned: unchanged
    assert claude.last.json()["messages"] == history[:3]
