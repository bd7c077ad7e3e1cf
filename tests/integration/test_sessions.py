"""Sessions: x-gateway-session-id / x-gateway-parent-request-id land in the row, the saved
query ``session-tree`` returns them, and ``llm-gateway sessions show`` draws the tree with
per-step and total tokens, cost and latency (through the gateway's /admin/query)."""

from __future__ import annotations

import uuid

import openai
import orjson
import pytest
from click.testing import CliRunner

from gateway.cli.commands import main
from gateway.cli.sessions import build_tree, render_tree, totals
from gateway.telemetry.record import to_uuid
from tests.support.gateway import serve
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml  # noqa: F401
from tests.support.telemetry_rows import flush

MODELS = """
backends:
  mock:
    type: mock
    mock: {tokens: 6, chunk_tokens: 2}
models:
  mock-gpt: {targets: [{backend: mock}]}
pricing:
  models:
    mock-gpt: {input: 1.0, output: 2.0}
"""


def select(database: str, sql: str) -> list[dict]:
    from tests.support.telemetry import chdb_client

    client = chdb_client(database)
    try:
        data = client.raw_query(sql, fmt="JSONEachRow")
    finally:
        client.close()
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


@pytest.fixture
def srv(tmp_path, tdb):
    server = serve(MODELS + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "spool"))
    server.__enter__()
    yield server
    server.__exit__(None, None, None)


def test_session_headers_rows_and_tree(srv, tdb):
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="sk-test", max_retries=0)
    session = f"sess-{uuid.uuid4().hex[:8]}"
    msgs = [{"role": "user", "content": "hi"}]
    root = client.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=msgs, extra_headers={"x-gateway-session-id": session})
    root_id = root.headers["x-request-id"]
    child = client.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=msgs, extra_headers={"x-gateway-session-id": session,
                                                        "x-gateway-parent-request-id": root_id})
    child_id = child.headers["x-request-id"]
    # a grandchild with a caller-chosen id that is not a UUID, and its child naming it by that id
    list(client.chat.completions.create(model="mock-gpt", messages=msgs, stream=True,
                                        extra_headers={"x-gateway-session-id": session, "x-request-id": "step-3",
                                                       "x-gateway-parent-request-id": child_id}))
    client.chat.completions.create(model="mock-gpt", messages=msgs, extra_headers={
        "x-gateway-session-id": session, "x-gateway-parent-request-id": "step-3"})
    client.chat.completions.create(model="mock-gpt", messages=msgs)  # no session
    flush(srv)

    rows = select(tdb, "SELECT toString(request_id) AS id, session_id, parent_request_id, client_request_id "
                       "FROM llm_requests ORDER BY ts_start")
    assert [r["session_id"] for r in rows] == [session, session, session, session, ""]
    assert [r["parent_request_id"] for r in rows] == ["", root_id, child_id, "step-3", ""]
    assert rows[2]["client_request_id"] == "step-3" and rows[2]["id"] != to_uuid("step-3")[0]
    step3 = rows[2]["id"]

    result = CliRunner().invoke(main, ["sessions", "show", session, "--url", srv.url])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"session {session}: 4 requests"
    assert lines[1].startswith("mock-gpt  200") and root_id in lines[1]
    assert lines[2].startswith("  └─ mock-gpt  200") and child_id in lines[2]
    assert lines[3].startswith("    └─ mock-gpt  200") and step3 in lines[3]
    assert lines[4].startswith("      └─ mock-gpt  200") and rows[3]["id"] in lines[4]
    # mock usage: prompt tokens counted by the mock, 6 completion tokens per call
    assert "+6=" in lines[1] and "cost $" in lines[1]
    assert lines[5].startswith("total: 4 requests, 0 errors, tokens ") and "+24=" in lines[5]

    as_json = CliRunner().invoke(main, ["sessions", "show", session, "--url", srv.url, "--json"])
    data = orjson.loads(as_json.stdout)
    assert [r["depth"] for r in data["requests"]] == [0, 1, 2, 3]
    t = data["totals"]
    assert t["requests"] == 4 and t["completion_tokens"] == 24
    per_call = data["requests"][0]["cost_usd"]
    assert t["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in data["requests"]))
    assert per_call > 0

    empty = CliRunner().invoke(main, ["sessions", "show", "nope", "--url", srv.url])
    assert empty.exit_code == 0 and "no requests logged" in empty.output


def test_tree_and_totals_on_known_rows():
    rows = [
        {"request_id": "a", "parent_request_id": "", "model": "chain-m", "provider": "chain", "chain": "c",
         "status_code": 200, "prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14, "cost_usd": 0.3,
         "latency_ms": 50.0},
        {"request_id": "b", "parent_request_id": "a", "model": "m1", "provider": "openai", "step": "one",
         "status_code": 200, "prompt_tokens": 6, "completion_tokens": 2, "total_tokens": 8, "cost_usd": 0.1,
         "latency_ms": 20.0},
        {"request_id": "c", "parent_request_id": "a", "model": "m2", "provider": "openai", "step": "two",
         "status_code": 502, "error_type": "upstream_http_error", "prompt_tokens": 4, "completion_tokens": 2,
         "total_tokens": 6, "cost_usd": 0.2, "latency_ms": 25.0},
        {"request_id": "d", "parent_request_id": "elsewhere", "model": "m1", "provider": "openai",
         "status_code": 200, "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2, "cost_usd": None,
         "latency_ms": 5.0},
        {"request_id": "e", "parent_request_id": "b", "model": "m1", "provider": "openai",
         "status_code": 200, "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2, "cost_usd": None,
         "latency_ms": 5.0},
    ]
    order = [(d, r["request_id"]) for d, r in build_tree(rows)]
    assert order == [(0, "a"), (1, "b"), (2, "e"), (1, "c"), (0, "d")]
    t = totals(rows)  # the chain row ("a") sums its steps already: not counted twice
    assert t == {"requests": 5, "errors": 1, "prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18,
                 "cost_usd": 0.3, "latency_ms": 55.0}
    text = render_tree("s", rows)
    assert "[one] m1" in text and "502 upstream_http_error" in text and "chain c" in text
