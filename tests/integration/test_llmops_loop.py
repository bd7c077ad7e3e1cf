"""One turn of the LLMOps loop, exactly as docs/llmops.md "One turn of the loop" walks it: a
running gateway (bodies logged) in front of a fake vLLM server that serves a base
model and loads LoRA adapters, rows in a ClickHouse server (the stand-in). The OpenAI SDK sends traffic with
metadata and posts feedback; then, in the walkthrough's order: ``dataset export``, the adapter,
the sticky 90/10 canary and the gates declared (hot reload), a promotion refused before any
evaluation, ``eval run`` of two prompt versions and the adapter with a gate one candidate fails,
the canary's arms, ``bias``, ``drift``, the promotions allowed and served by the running
gateway, and the rollbacks."""

from __future__ import annotations

import time

import httpx
import openai
import orjson
from click.testing import CliRunner

from gateway.cli.commands import main
from tests.support.dashboard import emit
from tests.support.drift import drift_rows
from tests.support.fake_upstream import FakeVllm
from tests.support.gateway import serve
from tests.support.polling import wait_for
from tests.support.standin import standin  # noqa: F401
from tests.support.telemetry import isolate_telemetry_data, tdb  # noqa: F401
from tests.support.telemetry_rows import flush
from tests.support.vllm_fleet import backend_status

QUESTIONS = {"How do I reset my password?": "Settings > Security > Reset.",
             "Where is my invoice?": "Billing > Invoices.",
             "Can I change my plan?": "Yes: Billing > Plan.",
             "How do I delete my account?": "Settings > Account > Delete."}
UNSURE = "I am not sure."

PROMPT = """\
# The support bot's system prompt.
versions:
  - version: 1
    messages: [{role: system, content: "Answer."}]
  - version: 2
    messages: [{role: system, content: "Answer briefly, with the menu path."}]
labels:
  production: 1
"""

LOGGING = """\
server: {{reload_interval_s: 0.05}}
backends:
  vllm-a: {{type: vllm, base_url: "{url}", vllm: {{scrape_interval_ms: 40, timeout_ms: 500}}}}
models:
  support:                        # what the app calls
    prompt: support-bot           # its production label
    targets: [{{backend: vllm-a, model: tiny-llama}}]
routing: {{retry: {{attempts: 1}}}}
telemetry:
  data_dir: "{data}"
  clickhouse: {{dsn: "{dsn}"}}       # a ClickHouse server
  flush_interval_ms: 100
  bodies: {{request: true, response: true}}
"""

# Step 3: the adapter, a model for each evaluation candidate, the canary and the gates.
DECLARED = """\
models:
  support-base: {targets: [{backend: vllm-a, model: tiny-llama}]}
  support-ft: {targets: [{backend: vllm-a, model: support-ft}]}
  support:                        # what the app calls
    prompt: support-bot           # its production label
    strategy: weighted
    sticky: true
    targets:
      - {backend: vllm-a, model: tiny-llama, weight: 90}
      - {backend: vllm-a, model: support-ft, weight: 10}
adapters:
  support-ft:
    base_model: tiny-llama
    versions:
      1: /loras/support-v1
    version: 1
evaluations:
  gates:
    support-bot@2: ["exact>=0.75", "error_rate<=0.01"]
    support-ft: ["exact>=0.75", "error_rate<=0.01"]
"""


def answer(received) -> dict | None:
    """The fake server's models: the adapter and the base model with prompt version 2 know every
    answer; the base model with version 1 only half of them, except for the callers with an even
    number (and for no caller when there is none: an evaluation's calls)."""
    if not received.path.endswith("/chat/completions"):
        return None
    body = received.json()
    question = body["messages"][-1]["content"]
    system = " ".join(m["content"] for m in body["messages"] if m["role"] == "system")
    caller = body.get("user", "user-1")
    knows = (body["model"] == "support-ft" or "briefly" in system
             or list(QUESTIONS).index(question) % 2 == 0 or int(caller.rsplit("-", 1)[1]) % 2 == 0)
    text = QUESTIONS[question] if knows else UNSURE
    return {"id": "chatcmpl-x", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}}


def cli(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def ask(client, user: str, question: str):
    """One request of the app through the OpenAI SDK: (raw response, parsed answer)."""
    raw = client.chat.completions.with_raw_response.create(
        model="support", messages=[{"role": "user", "content": question}], user=user,
        metadata={"region": "eu" if int(user.rsplit("-", 1)[1]) % 2 else "us"})
    return raw, raw.parse()


def traffic(gw, client) -> dict[str, set[str]]:
    """Twenty callers ask every question and rate each answer; the models each caller got."""
    served: dict[str, set[str]] = {}
    for n in range(20):
        for question in QUESTIONS:
            raw, reply = ask(client, f"user-{n}", question)
            assert raw.headers["x-gateway-prompt-version"] == "1"
            served.setdefault(f"user-{n}", set()).add(reply.model)
            good = reply.choices[0].message.content != UNSURE
            fb = httpx.post(f"{gw.url}/v1/feedback", json={"request_id": raw.headers["x-request-id"],
                                                          "score": 1 if good else 0}, timeout=30)
            assert fb.status_code == 200, fb.text
    flush(gw)
    return served


def test_one_turn_of_the_loop(tmp_path, tdb, standin, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the commands find ./gateway.yaml, as in the walkthrough
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "support-bot.yaml").write_text(PROMPT)
    config = tmp_path / "gateway.yaml"
    with FakeVllm("vllm-a") as fake:
        fake.base_models = {"tiny-llama"}
        fake.respond(answer)
        config.write_text(LOGGING.format(url=fake.url, data=tmp_path / "data", dsn=standin.dsn(tdb)))
        with serve(path=config) as gw:
            client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="sk-app", max_retries=0)

            # 1. Log: bodies on, the app's traffic with metadata, the users' feedback.
            traffic(gw, client)

            # 2. Export what the users rated well, deduplicated, a quarter held out.
            exported = cli("dataset", "export", "--model", "support", "--min-feedback", "0.5", "--dedupe",
                           "--split", "0.25", "-o", "train.jsonl")
            assert exported.exit_code == 0, exported.output
            examples = [orjson.loads(x) for f in ("train.jsonl", "train.val.jsonl")
                        for x in (tmp_path / f).read_text().splitlines()]
            assert len(examples) == len(QUESTIONS)  # one per question, each answered right
            assert {e["messages"][-1]["content"] for e in examples} == set(QUESTIONS.values())
            assert all(e["messages"][0] == {"role": "system", "content": "Answer."} for e in examples)
            assert "low_feedback 20" in exported.stderr and "duplicate" in exported.stderr

            # 3. (Training is elsewhere.) Declare the adapter, its model, the canary and the gates.
            models = config.read_text().split("models:\n", 1)[1].split("routing:", 1)[0]
            config.write_text(config.read_text().replace("models:\n" + models, DECLARED))
            wait_for(lambda: backend_status(gw, "vllm-a")["adapters"] == {"support-ft": "loaded"},
                     what="the gateway loads the adapter")
            assert fake.loras == {"support-ft": "/loras/support-v1"}
            refused = cli("prompts", "promote", "support-bot", "2")  # no evaluation yet
            assert refused.exit_code == 1, refused.output
            assert "support-bot@2: refused: evaluation gates fail" in refused.output
            assert "no finished evaluation run of 'support-bot@2'" in refused.output
            assert (tmp_path / "prompts" / "support-bot.yaml").read_text() == PROMPT

            # 4. Evaluate both prompt versions and the adapter on the export, with a gate.
            (tmp_path / "eval.jsonl").write_text((tmp_path / "train.jsonl").read_text()
                                                 + (tmp_path / "train.val.jsonl").read_text())
            evaluated = cli("eval", "run", "--dataset", "eval.jsonl", "-c", "support-bot@1", "-c", "support-bot@2",
                            "-c", "support-ft", "--prompt-model", "support-base", "-s", "exact", "-s", "contains",
                            "--gate", "exact>=0.75", "--run-id", "loop-1", "-o", "report.json")
            assert evaluated.exit_code == 3, evaluated.output  # version 1 fails the gate
            assert "gate failed: exact>=0.75: exact is 0.5 in run loop-1 (support-bot@1)" in evaluated.stderr
            assert "(support-bot@2)" not in evaluated.stderr and "(support-ft)" not in evaluated.stderr
            report = orjson.loads((tmp_path / "report.json").read_text())
            assert {arm: s["mean"] for arm, s in report["scores"]["exact"].items()} == {
                "support-bot@1": 0.5, "support-bot@2": 1.0, "support-ft": 1.0}
            compared = cli("eval", "compare", "loop-1")
            assert compared.exit_code == 0 and "support-ft" in compared.stdout, compared.output

            # 5. The canary: each caller keeps its arm; the arms side by side.
            served = traffic(gw, client)
            assert all(len(m) == 1 for m in served.values()), served
            on_adapter = sum(m == {"support-ft"} for m in served.values())
            assert 0 < on_adapter < 20, served
            arms = cli("query", "--saved", "adapter-arms", "-p", "model=support", "--format", "jsonl")
            assert arms.exit_code == 0, arms.output
            by_arm = {r["arm"]: r for r in map(orjson.loads, arms.stdout.splitlines())}
            assert set(by_arm) == {"base", "support-ft@1"}
            assert by_arm["support-ft@1"]["requests"] == 4 * on_adapter
            assert by_arm["support-ft@1"]["mean_score"] == 1 and by_arm["base"]["mean_score"] < 1

            # 6a. Bias: callers in eu rate the base model's answers lower.
            bias_args = ("bias", "--by", "metadata.region", "--model", "support", "--hours", "1",
                         "--min-count", "20", "--min-feedback", "20")
            bias = cli(*bias_args)
            assert bias.exit_code == 1, bias.output
            assert "DISPARITY: feedback_score" in bias.output and "eu" in bias.output
            checks = {c["name"]: c for c in orjson.loads(cli(*bias_args, "--json").stdout)["checks"]}
            assert 0 < checks["feedback_score"]["p_adjusted"] < 1e-6  # a small p stays readable, not 0

            # 6b. Drift: the last 24 h against the week before (history seeded as the gateway logs it).
            fresh = cli("drift", "--model", "support", "--min-samples", "50")  # no week before yet
            assert fresh.exit_code == 3 and "insufficient data" in fresh.output, fresh.output
            history, _ = drift_rows(time.time(), "support", drifted=False, n_ref=300, n_cur=0, feedback=0)
            emit(gw, history)
            drift = cli("drift", "--model", "support", "--min-samples", "50")
            assert drift.exit_code == 1, drift.output  # the support bot's short answers are not last week's
            assert "DRIFT: prompt_tokens" in drift.output

            # 7. Promote: the gates pass now, and the running gateway serves the new versions.
            promoted = cli("prompts", "promote", "support-bot", "2")
            assert promoted.exit_code == 0, promoted.output
            assert "label production: 1 -> 2" in promoted.output

            def prompt_served() -> str:
                return ask(client, "user-1", "Where is my invoice?")[0].headers["x-gateway-prompt-version"]

            wait_for(lambda: prompt_served() == "2", what="the gateway serves prompt version 2")
            # the next fine-tune: its path under versions, then promoted
            config.write_text(config.read_text().replace("      1: /loras/support-v1\n",
                                                         "      1: /loras/support-v1\n      2: /loras/support-v2\n"))
            adapter = cli("adapters", "promote", "support-ft", "2")
            assert adapter.exit_code == 0, adapter.output
            assert "adapter support-ft: 1 -> 2" in adapter.output
            wait_for(lambda: fake.loras == {"support-ft": "/loras/support-v2"}, what="version 2 loaded in place")
            listed = cli("adapters", "list")
            assert "version 2 (/loras/support-v2)" in listed.output and "previous 1" in listed.output

            # 8. Roll back: both go back, and the gateway follows.
            assert cli("prompts", "rollback", "support-bot").exit_code == 0
            wait_for(lambda: prompt_served() == "1", what="the gateway serves prompt version 1 again")
            back = cli("adapters", "rollback", "support-ft")
            assert back.exit_code == 0 and "adapter support-ft: 2 -> 1" in back.output, back.output
            wait_for(lambda: fake.loras == {"support-ft": "/loras/support-v1"}, what="version 1 loaded again")
