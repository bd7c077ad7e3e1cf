"""``/v1/responses`` translated to Chat Completions: the instructions and every ``developer`` or
``system`` item (Codex sends them mid-conversation, and a kept conversation holds earlier ones)
become one leading system message, in order, since chat templates refuse system messages
anywhere else; an Anthropic backend gets all of it in ``system``."""

from __future__ import annotations

import openai
import pytest

from tests.support.fake_upstream import FakeUpstream

CHAT = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Done."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22}}
MESSAGE = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4",
           "content": [{"type": "text", "text": "Done."}], "stop_reason": "end_turn", "stop_sequence": None,
           "usage": {"input_tokens": 20, "output_tokens": 2}}


def developer(text: str) -> dict:
    return {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": text}]}


FIRST = [developer("cwd: /repo"), {"role": "user", "content": "List files"}]
SECOND = [{"role": "user", "content": "Now the tests"}, developer("Sandbox: read-only."),
          {"role": "system", "content": "Be terse."}, {"role": "user", "content": "Go"}]
SYSTEM = "You are a coding agent.\n\ncwd: /repo\n\nSandbox: read-only.\n\nBe terse."
TURNS = [{"role": "user", "content": "List files"}, {"role": "assistant", "content": "Done."},
         {"role": "user", "content": "Now the tests"}, {"role": "user", "content": "Go"}]


@pytest.fixture
def srv(make_gateway):
    with FakeUpstream() as chat, FakeUpstream() as claude:
        gw = make_gateway(f"""
backends:
  chat: {{type: openai, base_url: "{chat.url}", api_key: sk-backend, responses: translate}}
  claude: {{type: anthropic, base_url: "{claude.url}", api_key: sk-ant}}
models:
  gpt-4o: {{targets: [{{backend: chat, model: up}}]}}
  sonnet: {{targets: [{{backend: claude, model: claude-sonnet-4}}]}}
""")
        chat.json(CHAT)
        claude.json(MESSAGE)
        yield openai.OpenAI(base_url=f"{gw.url}/v1", api_key="k", max_retries=0), chat, claude


def test_a_chat_backend_gets_one_leading_system_message(srv):
    client, chat, _ = srv
    first = client.responses.create(model="gpt-4o", instructions="You are a coding agent.", input=FIRST)
    assert chat.last.json()["messages"] == [{"role": "system", "content": "You are a coding agent.\n\ncwd: /repo"},
                                            {"role": "user", "content": "List files"}]
    client.responses.create(model="gpt-4o", instructions="You are a coding agent.", input=SECOND,
                            previous_response_id=first.id)  # the kept turn's developer item comes along
    assert chat.last.json()["messages"] == [{"role": "system", "content": SYSTEM}, *TURNS]
    client.responses.create(model="gpt-4o", input="Hi")  # no system text: no system message
    assert chat.last.json()["messages"] == [{"role": "user", "content": "Hi"}]


def test_an_anthropic_backend_gets_it_all_in_system(srv):
    client, _, claude = srv
    client.responses.create(model="sonnet", instructions="You are a coding agent.",
                            input=[*FIRST, {"role": "assistant", "content": "Done."}, *SECOND])
    sent = claude.last.json()
    assert sent["system"] == SYSTEM
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]  # Anthropic joins the two users
