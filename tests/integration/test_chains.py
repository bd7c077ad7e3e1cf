"""Chains: a two-step chain served as a public model, run in-process through the gateway's own
request path against a scripted fake upstream; step outputs flow into later prompts, every
step gets a row (same session, parent = the chain's row) and the chain's row sums them; a
failing step names itself; the last step streams; the deadline holds; config checks, hot
reload and the ``chains`` CLI."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest
from click.testing import CliRunner

from gateway.cli.commands import main
from gateway.compiled import compile_config
from gateway.config import ConfigError, load_config
from gateway.config.loader import watched_files
from gateway.proxy.server import BackgroundServer
from tests.support.fake_upstream import FakeUpstream, chat_chunk, sse_event
from tests.support.gateway import serve
from tests.support.polling import wait_for
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, select_rows, tdb, telemetry_yaml  # noqa: F401

OUTLINE = """
versions:
  - version: 1
    mode: template
    variables: [{name: question, type: string}]
    messages:
      - {role: user, content: "Outline an answer to: {{ question }}"}
    params: {temperature: 0}
labels: {production: 1}
"""

ANSWER = """
versions:
  - version: 1
    variables:
      - {name: outline, type: object}
      - {name: question, type: string}
    messages:
      - {role: system, content: "Answer '{{ question }}' covering {{ outline.points | join(', ') }}."}
labels: {production: 1}
"""

CHAIN = """
description: outline, then answer
version: 3
deadline_s: {deadline}
steps:
  - name: outline
    prompt: outline@production
    model: gpt-test
    parse_json: true
  - name: answer
    prompt: answer@1
    model: gpt-test
    include_messages: true
    params: {{temperature: 0.5}}
"""


def completion(content: str, prompt_tokens: int = 10, completion_tokens: int = 5) -> dict:
    return {"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": "up-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def write_config(root: Path, upstream_url: str, telemetry: str = "", deadline: float = 30,
                 chain: str | None = None) -> Path:
    (root / "prompts").mkdir(parents=True, exist_ok=True)
    (root / "chains").mkdir(exist_ok=True)
    (root / "prompts" / "outline.yaml").write_text(OUTLINE)
    (root / "prompts" / "answer.yaml").write_text(ANSWER)
    (root / "chains" / "research.yaml").write_text(chain or CHAIN.format(deadline=deadline))
    path = root / "gateway.yaml"
    path.write_text(f"""
server: {{reload_interval_s: 0.1}}
backends:
  fake: {{type: openai, base_url: "{upstream_url}", api_key: sk-backend-secret}}
models:
  gpt-test:
    targets: [{{backend: fake, model: up-model}}]
  research:
    chain: research
routing:
  retry: {{attempts: 1}}
pricing:
  models:
    up-model: {{input: 1000000.0, output: 2000000.0}}
{telemetry}
""")
    return path


@pytest.fixture
def upstream():
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def start(tmp_path, upstream):
    servers = []

    def go(**kw) -> BackgroundServer:
        srv = serve(path=write_config(tmp_path, upstream.url, **kw))
        srv.__enter__()
        servers.append(srv)
        return srv

    yield go
    for srv in servers:
        srv.__exit__(None, None, None)


def sdk(srv) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-client", max_retries=0)




def test_two_step_chain_outputs_flow_and_rows_sum(start, upstream, tmp_path, tdb):
    srv = start(telemetry=telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool"))
    upstream.json(completion('```json\n{"points": ["cost", "speed"]}\n```', 10, 5), times=1)
    upstream.json(completion("The final answer.", 20, 7), times=1)
    raw = sdk(srv).chat.completions.with_raw_response.create(
        model="research", messages=[{"role": "user", "content": "Which is best?"}],
        extra_body={"variables": {"question": "Which kettle?"}}, extra_headers={"x-gateway-session-id": "s-1"})
    answer = raw.parse()
    assert answer.choices[0].message.content == "The final answer."
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (30, 12, 42)
    assert raw.headers["x-gateway-chain"] == "research" and raw.headers["x-gateway-chain-steps"] == "2"
    chain_id = raw.headers["x-request-id"]

    first, second = (r.json() for r in upstream.received)
    assert first["model"] == "up-model" and first["temperature"] == 0
    assert first["messages"] == [{"role": "user", "content": "Outline an answer to: Which kettle?"}]
    # the parsed JSON output of step 1 rendered into step 2's prompt, caller's messages after it
    assert second["messages"] == [{"role": "system", "content": "Answer 'Which kettle?' covering cost, speed."},
                                  {"role": "user", "content": "Which is best?"}]
    assert second["temperature"] == 0.5 and "variables" not in second and "prompt" not in second

    httpx.post(f"{srv.url}/admin/telemetry/flush", timeout=30)
    rows = select_rows(tdb, "SELECT toString(request_id) AS id, session_id, parent_request_id, model_requested, backend, "
                       "provider, prompt_id, prompt_version, metadata, prompt_tokens, completion_tokens, "
                       "total_tokens, cost_usd, status_code FROM llm_requests ORDER BY ts_start")
    by_model = {r["model_requested"]: r for r in rows if r["model_requested"] == "research"}
    chain_row = by_model["research"]
    steps = [r for r in rows if r["model_requested"] == "gpt-test"]
    assert chain_row["id"] == chain_id and chain_row["session_id"] == "s-1" and chain_row["parent_request_id"] == ""
    assert chain_row["provider"] == "chain" and chain_row["metadata"]["chain_version"] == "3"
    assert [s["metadata"]["chain_step"] for s in steps] == ["outline", "answer"]
    assert [(s["prompt_id"], s["prompt_version"]) for s in steps] == [("outline", 1), ("answer", 1)]
    assert all(s["session_id"] == "s-1" and s["parent_request_id"] == chain_id for s in steps)
    assert [s["total_tokens"] for s in steps] == [15, 27]
    assert (chain_row["prompt_tokens"], chain_row["completion_tokens"], chain_row["total_tokens"]) == (30, 12, 42)
    # prices: $1 per prompt token, $2 per completion token
    assert [s["cost_usd"] for s in steps] == [pytest.approx(20.0), pytest.approx(34.0)]
    assert chain_row["cost_usd"] == pytest.approx(54.0)
    assert all(r["status_code"] == 200 for r in rows)

    # the session tree shows the chain with its two steps under it
    out = CliRunner().invoke(main, ["sessions", "show", "s-1", "--url", srv.url])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[1].startswith("chain research  200") and lines[2].startswith("  └─ [outline] gpt-test")
    assert lines[3].startswith("  └─ [answer] gpt-test") and "tokens 30+12=42" in lines[4]


def test_a_failing_step_names_itself(start, upstream):
    srv = start()
    client = sdk(srv)
    upstream.json({"error": {"message": "backend on fire", "type": "server_error"}}, status=500, times=1)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="research", messages=[], extra_body={"variables": {"question": "q"}})
    err = info.value.body
    assert 'chain "research" step 1 "outline" (model gpt-test) failed: HTTP 500: backend on fire' == err["message"]
    assert err["param"] == "chain.steps[0]" and len(upstream.received) == 1

    upstream.json(completion("not json at all"), times=1)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="research", messages=[], extra_body={"variables": {"question": "q"}})
    assert info.value.status_code == 502
    err = info.value.body
    assert err["code"] == "chain_output_not_json" and 'step 1 "outline"' in err["message"]
    assert "not json at all" in err["message"] and len(upstream.received) == 2  # step 2 never ran

    # a prompt variable missing: the step's 400, naming the step
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="research", messages=[], extra_body={"variables": {}})
    assert 'step 1 "outline"' in info.value.body["message"] and "question" in info.value.body["message"]
    assert len(upstream.received) == 2


def test_the_last_step_streams(start, upstream):
    srv = start()
    upstream.json(completion('{"points": ["a"]}'), times=1)
    upstream.sse([sse_event(chat_chunk(role=True)), sse_event(chat_chunk("Hel")), sse_event(chat_chunk("lo")),
                  sse_event(chat_chunk(finish="stop")),
                  sse_event(chat_chunk(choices=False, usage={"prompt_tokens": 3, "completion_tokens": 2,
                                                             "total_tokens": 5})),
                  b"data: [DONE]\n\n"], chunk_delay_s=0.01, times=1)
    stream = sdk(srv).chat.completions.with_raw_response.create(
        model="research", messages=[{"role": "user", "content": "hi"}], stream=True,
        extra_body={"variables": {"question": "q"}})
    assert stream.headers["x-gateway-chain"] == "research"
    chunks = list(stream.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage
    first, second = (r.json() for r in upstream.received)
    assert "stream" not in first and second["stream"] is True
    assert second["stream_options"] == {"include_usage": True}


def test_the_deadline_holds(start, upstream):
    srv = start(deadline=0.5)
    upstream.json(completion('{"points": []}'), delay_s=30, times=1)
    t0 = time.perf_counter()
    with pytest.raises(openai.APIStatusError) as info:
        sdk(srv).chat.completions.create(model="research", messages=[], extra_body={"variables": {"question": "q"}})
    elapsed = time.perf_counter() - t0
    assert info.value.status_code == 504 and elapsed < 10  # the 0.5 s deadline, not the 30 s step
    err = info.value.body
    assert err["code"] == "chain_deadline_exceeded" and 'step 1 "outline"' in err["message"]


def test_config_checks(tmp_path, upstream):
    path = write_config(tmp_path, upstream.url)
    snap = load_config(path)
    assert compile_config(snap).chains.by_model["research"].name == "research"
    assert tmp_path / "chains" / "research.yaml" in watched_files(snap)

    def broken(chain_text: str, extra: str = "") -> str:
        (tmp_path / "chains" / "research.yaml").write_text(chain_text)
        if extra:
            path.write_text(path.read_text() + extra)
        with pytest.raises(ConfigError) as info:
            compile_config(load_config(path))
        return "\n".join(info.value.problems)

    bad_model = CHAIN.format(deadline=5).replace("model: gpt-test\n    parse_json", "model: nope\n    parse_json")
    assert 'steps[0] (outline).model: unknown model "nope"' in broken(bad_model)
    bad_prompt = CHAIN.format(deadline=5).replace("answer@1", "answer@9")
    assert "steps[1] (answer).prompt: prompt 'answer' has no version 9" in broken(bad_prompt)
    assert "exceed max_steps 1" in broken(CHAIN.format(deadline=5) + "max_steps: 1\n")
    assert "steps: List should have at least 1 item" in broken("steps: []\n")
    (tmp_path / "chains" / "research.yaml").write_text(CHAIN.format(deadline=5))
    path.write_text(path.read_text().replace("  research:\n    chain: research\n",
                                             "  research:\n    chain: research\n  other: {chain: missing}\n"))
    with pytest.raises(ConfigError) as info:
        compile_config(load_config(path))
    assert 'models.other.chain: unknown chain "missing"' in str(info.value)


def test_hot_reload_of_a_chain_file(start, upstream, tmp_path):
    srv = start()
    before = httpx.get(f"{srv.url}/readyz").json()["config_hash"]
    text = (tmp_path / "chains" / "research.yaml").read_text().replace("version: 3", "version: 4")
    (tmp_path / "chains" / "research.yaml").write_text(text)
    wait_for(lambda: httpx.get(f"{srv.url}/readyz").json()["config_hash"] != before,
             what="the chain edit to be reloaded")
    upstream.json(completion('{"points": ["x"]}'), times=1)
    upstream.json(completion("ok"), times=1)
    raw = sdk(srv).chat.completions.with_raw_response.create(model="research", messages=[],
                                                              extra_body={"variables": {"question": "q"}})
    assert raw.headers["x-gateway-chain-version"] == "4"


def test_chains_cli(tmp_path, upstream):
    path = write_config(tmp_path, upstream.url)
    runner = CliRunner()
    listed = runner.invoke(main, ["chains", "list", "--config", str(path)])
    assert listed.exit_code == 0 and "research  v3" in listed.output and "served as: research" in listed.output
    shown = runner.invoke(main, ["chains", "show", "research", "--config", str(path)])
    assert shown.exit_code == 0 and "prompt: outline@production" in shown.output
    with serve(path=path) as srv:
        upstream.json(completion('{"points": ["y"]}'), times=1)
        upstream.json(completion("from the CLI"), times=1)
        ran = runner.invoke(main, ["chains", "run", "research", "--var", "question=why", "--url", srv.url,
                                   "--config", str(path), "--session", "cli-1"])
    assert ran.exit_code == 0, ran.output
    assert "from the CLI" in ran.output
    assert upstream.received[-2].json()["messages"][0]["content"] == "Outline an answer to: why"
