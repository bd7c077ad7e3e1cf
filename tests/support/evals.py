"""The evaluation tests' shared fixture: a fake upstream that answers as a model, a judge and an
embeddings model would, two prompt versions, a judge rubric, a scorer plugin, a dataset and a
config (``setup``); ``eval_run`` invokes ``llm-gateway eval run`` in-process."""

from __future__ import annotations

import re
import textwrap

import orjson
import pytest
from click.testing import CliRunner

from gateway.cli import main
from tests.support.fake_upstream import FakeUpstream
from tests.support.telemetry import chdb_dsn, telemetry_yaml

RIGHT = {"What is 2+2?": "4", "Capital of France?": "Paris", "Give JSON for Bob": '{"name": "Bob"}',
         "What is 10/4?": "2.5"}
# What the fake model answers when the prompt (its system message) is in front: wrong, but in
# ways each scorer sees differently.
BRIEF = {"What is 2+2?": "I think it is 4.", "Capital of France?": "paris", "Give JSON for Bob": "name: Bob",
         "What is 10/4?": "3"}
DATASET = [
    {"id": "q1", "messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]},
    {"id": "q2", "input": "Capital of France?", "expected": "Paris", "regex": "(?i)^paris$"},
    {"id": "q3", "input": "Give JSON for Bob", "expected": '{"name": "Bob"}',
     "schema": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}},
    {"id": "q4", "input": "What is 10/4?", "expected": "2.5", "tolerance": 0.1},
]
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
PER_CALL = (10 * 1.0 + 5 * 2.0) / 1e6  # pricing of up-model below


def chat(content: str, model: str) -> dict:
    return {"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": model, "usage": USAGE,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]}


def vector(text: str) -> list[float]:
    return [float(len(text) % 7 + 1), float(sum(map(ord, text)) % 5 + 1)]


def answer(received):
    body = received.json()
    if received.path.endswith("/embeddings"):
        return {"object": "list", "model": body["model"], "usage": {"prompt_tokens": 2, "total_tokens": 2},
                "data": [{"object": "embedding", "index": i, "embedding": vector(t)} for i, t in enumerate(body["input"])]}
    messages = body["messages"]
    if messages[-1]["content"] == "Explode":
        return 500, {"error": {"message": "backend on fire", "type": "server_error"}}
    if body["model"] == "judge-up":  # the rubric renders "Expected: …" and "Answer: …" lines
        text = messages[-1]["content"]
        if "Expected: unjudgeable" in text:
            return 503, {"error": {"message": "judge overloaded", "type": "server_error"}}
        expected = re.search(r"^Expected: (.*)$", text, re.M).group(1)
        given = re.search(r"^Answer: (.*)$", text, re.M).group(1)
        if expected == given:
            return chat('```json\n{"score": 1, "reason": "matches"}\n```', "judge-up")
        return chat("Score: 1/4\nReason: differs from the expected answer", "judge-up")
    question = messages[-1]["content"]
    brief = any(m["role"] == "system" for m in messages)
    return chat((BRIEF if brief else RIGHT).get(question, "no idea"), body["model"])


PROMPT = """
versions:
  - version: 1
    messages: [{role: system, content: "Answer."}]
  - version: 2
    messages: [{role: system, content: "Answer briefly."}]
labels:
  production: 2
"""
JUDGE = """
versions:
  - version: 1
    variables:
      - {name: input, type: string}
      - {name: output, type: string}
      - {name: expected, type: string}
    messages:
      - role: user
        content: "Question: {{ input }}\\nExpected: {{ expected }}\\nAnswer: {{ output }}"
labels:
  production: 1
"""
PLUGIN = """
def short(item, output):
    if item["id"] == "q3":
        return None          # does not apply
    return 1.0 if len(output) <= len(item["expected"]) + 2 else 0.0
"""


@pytest.fixture
def setup(tmp_path, tdb, monkeypatch):
    with FakeUpstream() as fake:
        fake.respond(answer)
        (tmp_path / "prompts").mkdir()
        (tmp_path / "prompts" / "answer.yaml").write_text(PROMPT)
        (tmp_path / "prompts" / "eval-judge.yaml").write_text(JUDGE)
        (tmp_path / "myscorers.py").write_text(textwrap.dedent(PLUGIN))
        (tmp_path / "data.jsonl").write_text("\n".join(orjson.dumps(d).decode() for d in DATASET) + "\n")
        config = tmp_path / "gateway.yaml"
        config.write_text(f"""
backends:
  fake: {{type: openai, base_url: "{fake.url}", api_key: sk-test}}
models:
  gpt-test:
    targets: [{{backend: fake, model: up-model}}]
    cache: {{enabled: true, mode: always}}
  judge: {{targets: [{{backend: fake, model: judge-up}}]}}
  embed: {{targets: [{{backend: fake, model: embed-up}}]}}
pricing:
  models:
    up-model: {{input: 1.0, output: 2.0}}
evaluations:
  judge_model: judge
  embedding_model: embed
  gates:
    gpt-test: ["judge>=0.8"]
""" + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool", extra="  bodies: {request: true, response: true}\n"))
        monkeypatch.chdir(tmp_path)  # the plugin module is found in the current directory
        yield tmp_path, config, fake


def eval_run(config, *args):
    result = CliRunner().invoke(main, ["eval", "run", "--config", str(config), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result
