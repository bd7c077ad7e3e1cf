"""Dataset export: real traffic (OpenAI SDK → gateway → fake upstream) logged with bodies into
chDB, feedback posted to /v1/feedback, then ``llm-gateway dataset export`` through the
gateway's /admin/query: feedback filter, dedupe, split, redaction, tool calls kept, checked
line by line, and every line valid OpenAI chat fine-tuning format."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest
from click.testing import CliRunner

from gateway.cli.commands import main
from gateway.datasets.export import Exporter, ExportOptions, assistant_message, validate_example
from gateway.telemetry import SINK
from tests.support.fake_upstream import FakeUpstream, chat_chunk, sse_event
from tests.support.gateway import serve
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml  # noqa: F401

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}}}}}]
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}


def answer(content=None, tool_calls=None) -> dict:
    message = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "up-model",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


@pytest.fixture
def logged(tmp_path, tdb):
    """A gateway with bodies logging on, after known traffic and feedback; yields its URL."""
    with FakeUpstream() as upstream:
        text = f"""
backends:
  fake: {{type: openai, base_url: "{upstream.url}", api_key: sk-backend-secret}}
models:
  gpt-test: {{targets: [{{backend: fake, model: up-model}}]}}
  other: {{targets: [{{backend: fake, model: up-model}}]}}
routing: {{retry: {{attempts: 1}}}}
""" + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool", extra="  bodies: {request: true, response: true}\n")
        with serve(text) as srv:
            client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-client", max_retries=0)
            ids = {}

            def call(name, messages, reply, score=None, model="gpt-test", **kw):
                upstream.json(reply, times=1)
                raw = client.chat.completions.with_raw_response.create(model=model, messages=messages, **kw)
                ids[name] = raw.headers["x-request-id"]
                if score is not None:
                    r = httpx.post(f"{srv.url}/v1/feedback", json={"request_id": ids[name], "score": score})
                    assert r.status_code == 200, r.text

            pii = [{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": "Mail me at bob@example.com"}]
            call("pii", pii, answer("Sure, bob@example.com noted."), 1.0)
            call("dup", pii, answer("Sure, bob@example.com noted."), 0.9)
            call("tool", [{"role": "user", "content": "Weather in Oslo?"}], answer(None, [CALL]), 0.8,
                 tools=TOOLS)
            call("low", [{"role": "user", "content": "meh"}], answer("meh"), 0.1)
            call("none", [{"role": "user", "content": "no feedback"}], answer("ok"))
            call("other", [{"role": "user", "content": "other model"}], answer("fine"), 1.0, model="other")
            upstream.json({"error": {"message": "bad", "type": "invalid_request_error"}}, status=400, times=1)
            with pytest.raises(openai.BadRequestError):
                client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
            upstream.sse([sse_event(chat_chunk(role=True)), sse_event(chat_chunk("stre")),
                          sse_event(chat_chunk("amed")), sse_event(chat_chunk(finish="stop")),
                          b"data: [DONE]\n\n"], times=1)
            raw = client.chat.completions.with_raw_response.create(
                model="gpt-test", messages=[{"role": "user", "content": "stream it"}], stream=True)
            ids["stream"] = raw.headers["x-request-id"]
            list(raw.parse())
            httpx.post(f"{srv.url}/v1/feedback", json={"request_id": ids["stream"], "score": 0.7})
            assert httpx.post(f"{srv.url}/admin/telemetry/flush", timeout=30).json()["flushed"]
            assert srv.app[SINK].flush(20)
            yield srv, ids


def export(srv, *args) -> tuple[list[dict], str]:
    result = CliRunner().invoke(main, ["dataset", "export", "--url", srv.url, *args])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    return [orjson.loads(ln) for ln in lines], result.stderr


def test_export_filters_dedupe_tools_and_format(logged):
    srv, ids = logged
    rows, report = export(logged[0], "--model", "gpt-test", "--min-feedback", "0.5", "--dedupe")
    for row in rows:  # every line is a valid fine-tuning example, the assistant's answer last
        assert validate_example(row) == [] and row["messages"][-1]["role"] == "assistant"
    assert rows[0] == {"messages": [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Mail me at bob@example.com"},
                                    {"role": "assistant", "content": "Sure, bob@example.com noted."}]}
    assert rows[1] == {"messages": [{"role": "user", "content": "Weather in Oslo?"},
                                    {"role": "assistant", "tool_calls": [CALL]}], "tools": TOOLS}
    assert rows[2] == {"messages": [{"role": "user", "content": "stream it"},
                                    {"role": "assistant", "content": "streamed"}]}
    assert len(rows) == 3
    # read: 7 rows of gpt-test; skipped: the duplicate, low and missing feedback, the HTTP 400
    head, _, skipped = report.splitlines()[-1].partition("; skipped: ")
    assert head == "read 7 rows, wrote 3 examples"
    assert set(skipped.split(", ")) == {"duplicate 1", "low_feedback 1", "no_feedback 1", "status 1"}

    every, report = export(srv, "--status", "any", "--format", "jsonl")
    assert [r["request_id"] for r in every if r["model"] == "gpt-test"] == [
        ids[k] for k in ("pii", "dup", "tool", "low", "none", "stream")]
    assert every[0]["feedback_score"] == 1.0 and every[4]["feedback_score"] is None
    assert "unparseable_response 1" in report  # the 400's error body is no answer

    limited, _ = export(srv, "--limit", "2")
    assert len(limited) == 2


def test_export_redaction_and_split(logged, tmp_path):
    srv, _ = logged
    rows, _ = export(srv, "--redact", "pii", "--dedupe")
    texts = orjson.dumps(rows).decode()
    assert "bob@example.com" not in texts and "[EMAIL]" in texts
    assert rows[0]["messages"][1]["content"] == "Mail me at [EMAIL]"
    assert rows[0]["messages"][2]["content"] == "Sure, [EMAIL] noted."

    train, val = tmp_path / "train.jsonl", tmp_path / "train.val.jsonl"
    result = CliRunner().invoke(main, ["dataset", "export", "--url", srv.url, "--split", "0.5", "-o", str(train)])
    assert result.exit_code == 0, result.output
    a = [orjson.loads(x) for x in train.read_text().splitlines()]
    b = [orjson.loads(x) for x in val.read_text().splitlines()]
    assert len(a) + len(b) == 7 and a and b  # every HTTP 200 answer (no --dedupe)
    assert f"({len(a)} train, {len(b)} validation)" in result.stderr
    assert all(validate_example(x) == [] for x in a + b)
    # deterministic: the same export splits the same way
    again = CliRunner().invoke(main, ["dataset", "export", "--url", srv.url, "--split", "0.5", "-o",
                                      str(tmp_path / "t2.jsonl")])
    assert again.exit_code == 0 and (tmp_path / "t2.val.jsonl").read_text() == val.read_text()


def test_bodies_off_is_said_clearly(tmp_path, tdb):
    with FakeUpstream() as upstream:
        text = f"""
backends: {{fake: {{type: openai, base_url: "{upstream.url}"}}}}
models: {{gpt-test: {{targets: [{{backend: fake}}]}}}}
""" + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool")
        upstream.json(answer("hi"))
        with serve(text) as srv:
            openai.OpenAI(base_url=f"{srv.url}/v1", api_key="k").chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "x"}])
            httpx.post(f"{srv.url}/admin/telemetry/flush", timeout=30)
            result = CliRunner().invoke(main, ["dataset", "export", "--url", srv.url])
    assert result.exit_code == 1
    assert "skipped: no_request_body 1" in result.stderr and "body logging was off" in result.stderr


def test_paging_and_units():
    rows = [{"request_id": f"00000000-0000-0000-0000-{i:012d}", "ts": f"2025-01-01 00:00:0{i}.000",
             "model": "m", "status_code": 200, "stream": False, "feedback_n": 0, "score": 0,
             "request_body": orjson.dumps({"messages": [{"role": "user", "content": f"q{i % 3}"}]}).decode(),
             "response_body": orjson.dumps(answer(f"a{i % 3}")).decode()} for i in range(7)]
    pages = []

    def fetch(sql, params):
        pages.append(dict(params))
        start = 0 if params["after_id"].startswith("00000000-0000-0000-0000-0000000000") and \
            params["after_ts"].startswith("1970") else int(params["after_id"][-12:]) + 1
        return rows[start:start + params["page"]]

    import io
    out = io.BytesIO()
    rep = Exporter(ExportOptions(dedupe=True, page_size=3)).run(fetch, out)
    assert rep.read == 7 and rep.written == 3 and rep.skipped["duplicate"] == 4
    assert [p["after_ts"] for p in pages] == ["1970-01-01 00:00:00.000", "2025-01-01 00:00:02.000",
                                              "2025-01-01 00:00:05.000"]
    assert validate_example({"messages": [{"role": "user", "content": "x"}]}) == [
        "the last message must be the assistant's"]
    assert assistant_message("plain streamed text", True) == {"role": "assistant", "content": "plain streamed text"}
    assert assistant_message('{"error": {"message": "x"}}', False) is None
