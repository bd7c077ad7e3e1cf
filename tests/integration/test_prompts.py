"""Versioned prompts: loading and immutability, selection, injection modes, variables, the
sandbox, experiments, hot reload, the admin endpoint and the CLI.

HTTP tests run the real gateway on loopback in front of the fake upstream, driven by the
official OpenAI SDK, and assert what the upstream received.
"""

from __future__ import annotations

import collections
from pathlib import Path

import httpx
import openai
import orjson
import pytest
from click.testing import CliRunner

from gateway.compiled import compile_config
from gateway.config import ConfigError, load_config, parse_config
from gateway.prompts.errors import PromptConfigError, PromptError
from gateway.prompts.loading import load_registry
from gateway.prompts.select import Ref, bucket, parse_ref, pick_arm
from tests.support.gateway import gateway_config, serve
from tests.support.polling import wait_for
from tests.support.prompts import GREET, MSG, OK, write_prompts

REPO = Path(__file__).resolve().parents[2]


TMPL = """
versions:
  - version: 1
    mode: template
    variables:
      - {name: text, type: string}
      - {name: n, type: integer, default: 3}
      - {name: tags, type: array, required: false}
    messages:
      - {role: system, content: "Summarise."}
      - role: user
        content: "{{ n }} bullets: {{ text }}{% if tags is defined %} tags={{ tags | join(',') }}{% endif %}"
    params: {temperature: 0, response_format: {type: json_object}}
labels: {production: 1}
"""

EVIL = """
versions:
  - version: 1
    variables: [{name: x, type: string}]
    messages: [{role: system, content: "{{ x.__class__.__mro__[1].__subclasses__() }}"}]
labels: {production: 1}
"""


@pytest.fixture
def prompt_dir(tmp_path) -> Path:
    return write_prompts(tmp_path / "prompts", greet=GREET, tmpl=TMPL, evil=EVIL)


def prompt_config(upstream_url: str, prompt_dir: Path, extra: str = "") -> str:
    return gateway_config(upstream_url, extra=f"""  summarizer:
    targets: [{{backend: fake, model: up-model}}]
    prompt: tmpl
  greeter:
    targets: [{{backend: fake, model: up-model}}]
    prompt: greet@staging
prompts: {{dir: "{prompt_dir}"}}
telemetry: {{enabled: false}}
{extra}""")


@pytest.fixture
def gw(upstream, make_gateway, prompt_dir):
    upstream.json(OK)
    return make_gateway(prompt_config(upstream.url, prompt_dir))


def client(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key="sk-test", max_retries=0)


def chat(gw, model="gpt-test", messages=MSG, headers=None, **kwargs):
    return client(gw).chat.completions.with_raw_response.create(model=model, messages=messages,
                                                                extra_headers=headers, **kwargs)


# --- files, hashes, immutability ----------------------------------------------------------

def test_example_prompts_load_and_render():
    registry = load_registry(REPO / "config" / "prompts")
    assert {"support-bot", "summarize"} <= set(registry.prompts)
    bot = registry.prompts["support-bot"]
    assert bot.labels["production"].version == 2 and bot.labels["canary"].arms == ((2, 90.0), (3, 10.0))
    messages = registry.resolve(parse_ref("support-bot@3")).version.render(
        {"product": "kettle", "orders": [{"id": 7, "status": "late"}]})
    assert "kettle" in messages[0]["content"] and "- 7: late" in messages[0]["content"]
    # The committed lock records every example version with its current hash.
    lock = orjson.loads((REPO / "config" / "prompts" / "versions.lock").read_bytes())
    for cv in registry.versions():
        assert lock["prompts"][cv.prompt][str(cv.version)]["hash"] == cv.content_hash


def test_changing_an_existing_version_is_rejected_naming_file_and_version(tmp_path):
    d = write_prompts(tmp_path / "prompts", greet=GREET)
    registry = load_registry(d)
    assert registry.record() is True  # versions.lock written
    assert (d / "versions.lock").is_file()
    # A new version and a changed note are fine; changed content of version 2 is not.
    changed = GREET.replace("{{ count }} times", "{{ count }} times!")
    (d / "greet.yaml").write_text(changed)
    with pytest.raises(PromptConfigError) as err:
        load_registry(d)
    [problem] = err.value.problems
    assert f"{d / 'greet.yaml'}: versions[1] (version 2): content changed since it was first seen" in problem
    assert "versions.lock" in problem and "add a new version" in problem
    # The gateway config reports the same through ConfigError, when the prompts feature
    # compiles it (start-up, reload, commands).
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text("backends: {m: {type: mock}}\nmodels: {x: {targets: [{backend: m}]}}\n")
    with pytest.raises(ConfigError) as cerr:
        compile_config(load_config(cfg))
    assert "greet.yaml: versions[1] (version 2): content changed" in str(cerr.value)
    # Only the note changed: allowed (the note is not content); a new version: allowed.
    (d / "greet.yaml").write_text(GREET.replace("note: first", "note: the first one").replace(
        "labels:", "  - version: 4\n    messages: [{role: system, content: new}]\nlabels:"))
    assert sorted(load_registry(d).prompts["greet"].versions) == [1, 2, 3, 4]


def test_reload_guard_works_without_a_lock_file(tmp_path):
    """The registry in force is a record too: a reload may not change a version even when the
    lock file could not be written."""
    d = write_prompts(tmp_path / "p", greet=GREET)
    text = f'prompts: {{dir: "{d}", lock_file: "{tmp_path / "missing" / "x.lock"}"}}\n'
    first = compile_config(parse_config(text))
    assert first.prompts.record() is False  # the lock's folder does not exist
    (d / "greet.yaml").write_text(GREET.replace("v1: greet", "v1: hello"))
    with pytest.raises(ConfigError) as err:
        compile_config(parse_config(text), previous=first)
    assert "versions[0] (version 1): content changed" in str(err.value)
    assert "the configuration in force" in str(err.value)
    assert compile_config(parse_config(text)).prompts  # without a record the edit loads (nothing to compare with)


@pytest.mark.parametrize("text, expected", [
    ("versions: [{version: 1, messages: [{role: system, content: '{{ who }}'}]}]",
     "messages[0].content: template uses undeclared variable(s) who"),
    ("versions: [{version: 1, messages: [{role: system, content: '{% if %}'}]}]",
     "messages[0].content: template syntax error at line 1"),
    ("versions: [{version: 1, messages: [{role: system, content: a}]}]\nlabels: {production: 2}",
     "labels.production: unknown version 2"),
    ("versions: [{version: 1, messages: [{role: system, content: a}]}, "
     "{version: 1, messages: [{role: system, content: b}]}]", "version 1 is defined twice"),
    ("versions: [{version: 1, variables: [{name: n, type: integer, default: x}], "
     "messages: [{role: system, content: '{{ n }}'}]}]", "default of variable 'n' is not of type integer"),
    ("versions: [{version: 1, messages: [{role: system, content: a}]}]\nlabels: {'7': 1}",
     "a bare number selects a version"),
    ("versions: [{version: 1, messages: [{role: system, content: a}], params: {model: x}}]",
     "params may not set model"),
    ("versions: [{version: 1, messages: [{role: robot, content: a}]}]", "versions[0].messages[0].role"),
])
def test_invalid_prompt_files_are_config_errors_with_paths(tmp_path, text, expected):
    d = write_prompts(tmp_path / "p", bad=text)
    with pytest.raises(PromptConfigError) as err:
        load_registry(d)
    assert any(expected in p and "bad.yaml" in p for p in err.value.problems), err.value.problems


def test_model_prompt_reference_is_checked(tmp_path):
    d = write_prompts(tmp_path / "p", greet=GREET)
    base = f'backends: {{m: {{type: mock}}}}\nprompts: {{dir: "{d}"}}\nmodels:\n  x:\n    targets: [{{backend: m}}]\n'
    with pytest.raises(ConfigError) as err:
        compile_config(parse_config(base + "    prompt: greet@nightly\n"))
    assert "models.x.prompt: prompt 'greet' has no label 'nightly'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        compile_config(parse_config(base + "    prompt: nope\n"))
    assert "models.x.prompt: unknown prompt 'nope'" in str(err.value)
    assert compile_config(parse_config(base + "    prompt: greet@3\n")).prompts.by_model["x"] == Ref("greet", version=3)


def test_prompt_files_feed_the_config_hash(tmp_path):
    d = write_prompts(tmp_path / "p", greet=GREET)
    text = f'prompts: {{dir: "{d}"}}\n'
    h1 = parse_config(text).content_hash
    (d / "greet.yaml").write_text(GREET.replace("production: 1", "production: 2"))
    assert parse_config(text).content_hash != h1
    assert parse_config("server: {port: 1}\n").content_hash == parse_config("server: {port: 1}\n").content_hash


def test_selector_syntax():
    assert parse_ref("support-bot") == Ref("support-bot")
    assert parse_ref("support-bot@staging") == Ref("support-bot", label="staging")
    assert parse_ref("support-bot@4") == Ref("support-bot", version=4)
    for bad in ("", "@x", "a@", "a@0", "a@-x", "a b"):
        with pytest.raises(PromptError):
            parse_ref(bad)


# --- experiments ------------------------------------------------------------------------------

def test_experiment_split_within_tolerance_and_sticky():
    arms = ((3, 90.0), (4, 10.0))
    counts = collections.Counter(pick_arm(arms, "bot\0canary", f"user-{i}") for i in range(20000))
    assert abs(counts[4] / 20000 - 0.10) < 0.01
    assert all(pick_arm(arms, "bot\0canary", "user-42") == pick_arm(arms, "bot\0canary", "user-42")
               for _ in range(10))
    # Growing the higher arm only moves callers onto it.
    grown = ((3, 50.0), (4, 50.0))
    on_four = {i for i in range(5000) if pick_arm(arms, "s", f"u{i}") == 4}
    assert on_four <= {i for i in range(5000) if pick_arm(grown, "s", f"u{i}") == 4}
    # Experiments are independent: the salt (prompt and label) changes the bucket.
    assert bucket("a\0canary", "u1") != bucket("b\0canary", "u1")


def test_experiment_over_http_is_sticky_per_user_and_header_key(gw, upstream):
    seen = collections.Counter()
    with httpx.Client(base_url=gw.url, timeout=30) as http:
        for i in range(500):
            r = http.post("/v1/chat/completions", headers={"x-gateway-prompt": "greet@canary"},
                          json={"model": "gpt-test", "messages": MSG, "user": f"user-{i}",
                                "prompt": {"variables": {"name": "Ann"}}})
            version = r.headers["x-gateway-prompt-version"]
            assert r.headers["x-gateway-experiment-arm"] == f"canary:{version}"
            assert r.headers["x-gateway-prompt-label"] == "canary"
            assert upstream.last.json()["messages"][0]["content"].startswith(f"v{version}:")
            seen[version] += 1
    assert abs(seen["2"] / 500 - 0.30) < 0.06, seen  # 3 standard deviations
    for key, header in (("user-7", {}), ("user-8", {"x-gateway-experiment-key": "team-a"})):
        arms = {chat(gw, headers={"x-gateway-prompt": "greet@canary", **header}, user=key,
                     extra_body={"prompt": {"variables": {"name": "Ann"}}}).headers["x-gateway-prompt-version"]
                for _ in range(6)}
        assert len(arms) == 1
    # The header key wins over the user: many users, one key, one arm.
    arms = {chat(gw, headers={"x-gateway-prompt": "greet@canary", "x-gateway-experiment-key": "k1"}, user=f"u{i}",
                 extra_body={"prompt": {"variables": {"name": "Ann"}}}).headers["x-gateway-prompt-version"]
            for i in range(10)}
    assert len(arms) == 1


# --- injection modes ----------------------------------------------------------------------------

def test_prepend_with_header_applies_params_and_keeps_the_callers_messages(gw, upstream):
    raw = chat(gw, headers={"x-gateway-prompt": "greet", "x-gateway-prompt-variables": '{"name": "Ann"}'},
               messages=[{"role": "system", "content": "caller system"}, *MSG], max_tokens=9)
    assert raw.headers["x-gateway-prompt"] == "greet"
    assert raw.headers["x-gateway-prompt-version"] == "1"
    assert raw.headers["x-gateway-prompt-label"] == "production"
    assert "x-gateway-experiment-arm" not in raw.headers
    sent = upstream.last.json()
    assert sent["messages"] == [{"role": "system", "content": "v1: greet Ann"},
                                {"role": "system", "content": "caller system"}, *MSG]
    assert sent["temperature"] == 0.1  # the prompt's default
    assert sent["max_tokens"] == 9  # the caller's value wins
    assert sent["model"] == "up-model" and "prompt" not in sent


def test_replace_system_mode(gw, upstream):
    chat(gw, messages=[{"role": "system", "content": "caller system"}, {"role": "developer", "content": "dev"},
                       *MSG], extra_body={"prompt": {"id": "greet", "version": 3}})
    assert upstream.last.json()["messages"] == [
        {"role": "system", "content": "v3 static"}, {"role": "user", "content": "example question"}, *MSG]
    # A request may pick the mode of any version.
    chat(gw, messages=[{"role": "system", "content": "caller system"}, *MSG],
         extra_body={"prompt": {"id": "greet", "label": "staging", "mode": "replace_system",
                                "variables": {"name": "Bo", "count": 5}}})
    assert upstream.last.json()["messages"] == [{"role": "system", "content": "v2: greet Bo 5 times"}, *MSG]


def test_template_mode_through_the_model_name(gw, upstream):
    """An app that only calls model ``summarizer`` sends variables; the prompt is the conversation."""
    raw = chat(gw, model="summarizer", messages=[],
               extra_body={"prompt": {"variables": {"text": "long text", "tags": ["a", "b"]}}})
    assert raw.headers["x-gateway-prompt"] == "tmpl" and raw.headers["x-gateway-prompt-version"] == "1"
    sent = upstream.last.json()
    assert sent["messages"] == [{"role": "system", "content": "Summarise."},
                                {"role": "user", "content": "3 bullets: long text tags=a,b"}]
    assert sent["temperature"] == 0 and sent["response_format"] == {"type": "json_object"}
    # Caller messages in template mode: 400, nothing sent upstream.
    before = len(upstream.received)
    with pytest.raises(openai.BadRequestError) as err:
        chat(gw, model="summarizer", extra_body={"prompt": {"variables": {"text": "x"}}})
    assert err.value.body["param"] == "messages" and "template mode" in err.value.body["message"]
    assert len(upstream.received) == before


def test_model_prompt_and_per_request_override(gw, upstream):
    raw = chat(gw, model="greeter", extra_body={"prompt": {"variables": {"name": "Cy"}}})
    assert raw.headers["x-gateway-prompt-version"] == "2" and raw.headers["x-gateway-prompt-label"] == "staging"
    assert upstream.last.json()["messages"][0]["content"] == "v2: greet Cy 2 times"
    raw = chat(gw, model="greeter", extra_body={"prompt": {"label": "production", "variables": {"name": "Cy"}}})
    assert raw.headers["x-gateway-prompt-version"] == "1"
    raw = chat(gw, model="greeter", headers={"x-gateway-prompt": "greet@3"})
    assert raw.headers["x-gateway-prompt-version"] == "3"
    raw = chat(gw, extra_body={"prompt": "greet@latest"})
    assert raw.headers["x-gateway-prompt-version"] == "3" and raw.headers["x-gateway-prompt-label"] == "latest"


def test_streamed_request_carries_the_prompt_headers(gw, upstream):
    from tests.support.fake_upstream import chat_chunk, sse_event

    upstream.sse([sse_event(chat_chunk(role=True)), sse_event(chat_chunk("hey")),
                  sse_event(chat_chunk(finish="stop")), b"data: [DONE]\n\n"])
    with httpx.stream("POST", f"{gw.url}/v1/chat/completions", headers={"x-gateway-prompt": "greet@2"},
                      json={"model": "gpt-test", "stream": True, "messages": MSG,
                            "prompt": {"variables": {"name": "Di"}}}) as r:
        body = r.read()
    assert r.status_code == 200 and b"hey" in body
    assert r.headers["x-gateway-prompt-version"] == "2"
    assert upstream.last.json()["messages"][0]["content"] == "v2: greet Di 2 times"


def test_requests_without_a_prompt_are_forwarded_byte_for_byte(gw, upstream):
    raw = b'{"model": "gpt-test",   "messages": [{"role": "user", "content": "hi"}], "prompt_cache_key": "k"}'
    r = httpx.post(f"{gw.url}/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and "x-gateway-prompt" not in r.headers
    sent = upstream.last.json()
    assert sent["messages"] == MSG and sent["prompt_cache_key"] == "k" and sent["model"] == "up-model"
    # /v1/completions keeps OpenAI's own `prompt` field untouched.
    httpx.post(f"{gw.url}/v1/completions", json={"model": "gpt-test", "prompt": "Say hi"})
    assert upstream.last.json()["prompt"] == "Say hi"
    r = httpx.post(f"{gw.url}/v1/completions", json={"model": "gpt-test", "prompt": "x"},
                   headers={"x-gateway-prompt": "greet"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "x-gateway-prompt"


# --- variables, selection errors, the sandbox: 400 and no upstream call ---------------------------

@pytest.mark.parametrize("headers, body, param, fragment", [
    ({"x-gateway-prompt": "greet"}, {}, "prompt.variables.name", "missing required variable 'name'"),
    ({"x-gateway-prompt": "greet"}, {"prompt": {"variables": {"name": 3}}}, "prompt.variables.name",
     "variable 'name' must be of type string, got integer"),
    ({"x-gateway-prompt": "greet@2"}, {"prompt": {"variables": {"name": "a", "count": "2"}}},
     "prompt.variables.count", "must be of type integer, got string"),
    ({"x-gateway-prompt": "greet@2"}, {"prompt": {"variables": {"name": "a", "count": True}}},
     "prompt.variables.count", "got boolean"),
    ({"x-gateway-prompt": "nope"}, {}, "x-gateway-prompt", "unknown prompt 'nope'"),
    ({"x-gateway-prompt": "greet@nightly"}, {}, "x-gateway-prompt", "has no label 'nightly'"),
    ({"x-gateway-prompt": "greet@9"}, {}, "x-gateway-prompt", "has no version 9"),
    ({"x-gateway-prompt": "greet@@"}, {}, "x-gateway-prompt", "invalid prompt selector"),
    ({}, {"prompt": {"id": "greet", "label": "staging", "version": 1}}, "prompt.version", "not both"),
    ({}, {"prompt": {"id": "greet", "vars": {}}}, "prompt.vars", "unknown field"),
    ({}, {"prompt": {"variables": {"name": "x"}}}, "prompt.id", "prompt.id is required"),
    ({}, {"prompt": 5}, "prompt", "prompt must be an object"),
    ({"x-gateway-prompt": "greet", "x-gateway-prompt-variables": "[1]"}, {}, "x-gateway-prompt-variables",
     "must be a JSON object"),
    ({"x-gateway-prompt": "greet", "x-gateway-prompt-mode": "append"}, {"prompt": {"variables": {"name": "x"}}},
     "x-gateway-prompt-mode", "must be one of prepend, replace_system, template"),
    ({"x-gateway-prompt": "evil"}, {"prompt": {"variables": {"x": "s"}}}, "prompt.variables.x",
     "sandbox blocked an unsafe operation"),
])
def test_bad_selection_or_variables_is_a_400_and_nothing_goes_upstream(gw, upstream, headers, body, param,
                                                                       fragment):
    before = len(upstream.received)
    r = httpx.post(f"{gw.url}/v1/chat/completions", headers=headers,
                   json={"model": "gpt-test", "messages": MSG, **body})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param and fragment in error["message"], error
    assert len(upstream.received) == before
    assert "x-gateway-prompt-version" not in r.headers


def test_sandbox_and_caller_values_are_data_not_code(gw, upstream):
    from gateway.prompts.render import make_environment

    env = make_environment()
    for source in ("{{ ''.__class__.__mro__ }}", "{{ cycler.__init__.__globals__ }}", "{{ x.append(1) }}"):
        with pytest.raises(Exception) as err:
            env.from_string(source).render(x=[])
        assert "unsafe" in str(err.value) or "SecurityError" in type(err.value).__name__
    chat(gw, headers={"x-gateway-prompt": "greet"},
         extra_body={"prompt": {"variables": {"name": "{{ 7 * 7 }} {% raw %}"}}})
    assert upstream.last.json()["messages"][0]["content"] == "v1: greet {{ 7 * 7 }} {% raw %}"


# --- hot reload ------------------------------------------------------------------------------------

def test_promotion_by_editing_a_label_hot_reloads(tmp_path, upstream):
    upstream.json(OK)
    d = write_prompts(tmp_path / "prompts", greet=GREET)
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(gateway_config(upstream.url, extra="server: {reload_interval_s: 0.05}\n"
                                                     "telemetry: {enabled: false}\n"))
    with serve(path=cfg) as gw:
        def version():
            return chat(gw, headers={"x-gateway-prompt": "greet"},
                        extra_body={"prompt": {"variables": {"name": "Ann"}}}).headers["x-gateway-prompt-version"]

        assert version() == "1"
        assert (d / "versions.lock").is_file()  # the serving gateway recorded the versions
        hash1 = httpx.get(f"{gw.url}/readyz").json()["config_hash"]
        (d / "greet.yaml").write_text(GREET.replace("production: 1", "production: 2"))
        wait_for(lambda: httpx.get(f"{gw.url}/readyz").json()["config_hash"] != hash1, what="the reload")
        assert version() == "2"
        assert upstream.last.json()["messages"][0]["content"] == "v2: greet Ann 2 times"
        # Editing a version's content is rejected: the running config (production → 2) stays.
        hash2 = httpx.get(f"{gw.url}/readyz").json()["config_hash"]
        from gateway.app import WATCHER

        (d / "greet.yaml").write_text(GREET.replace("production: 1", "production: 1").replace("v1: greet", "v1: yo"))
        wait_for(lambda: gw.app[WATCHER].status()["last_error"], what="the edit to be refused")
        assert httpx.get(f"{gw.url}/readyz").json()["config_hash"] == hash2
        assert version() == "2"
        status = gw.app[WATCHER].status()
        assert "versions[0] (version 1): content changed" in status["last_error"]
        # Rollback is the same one-line edit.
        (d / "greet.yaml").write_text(GREET)
        wait_for(lambda: version() == "1", what="the rollback")


# --- admin, feedback without telemetry, CLI ----------------------------------------------------------

def test_admin_prompts_lists_versions_labels_and_models(gw):
    data = httpx.get(f"{gw.url}/admin/prompts").json()
    greet = next(p for p in data["prompts"] if p["name"] == "greet")
    assert greet["labels"] == {"canary": {"1": 70.0, "2": 30.0}, "production": 1, "staging": 2}
    assert [v["version"] for v in greet["versions"]] == [1, 2, 3]
    v1 = greet["versions"][0]
    assert v1["messages"] == [{"role": "system", "content": "v1: greet {{ name }}"}]
    assert v1["variables"] == [{"name": "name", "type": "string", "required": True}]
    assert len(v1["content_hash"]) == 64 and v1["note"] == "first"
    assert data["models"] == {"summarizer": "tmpl", "greeter": "greet@staging"}
    assert data["telemetry"] is None


def test_feedback_validation_and_telemetry_off(gw):
    url = f"{gw.url}/v1/feedback"
    for body, param in ((b'{"score": 1}', "request_id"), (b'{"request_id": "r", "score": "good"}', "score"),
                        (b'{"request_id": "r", "score": 1e999}', None), (b'{"request_id": "r", "score": true}', "score"),
                        (b'{"request_id": "r", "score": 1, "x": 1}', "x"), (b'[1]', None), (b'nope', None),
                        (b'{"request_id": "r", "score": 1, "comment": 5}', "comment")):
        r = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["param"] == param
    r = httpx.post(url, json={"request_id": "r", "score": 1})
    assert r.status_code == 503 and r.json()["error"]["code"] == "telemetry_disabled"


def test_cli_list_show_diff_render_lock(prompt_dir):
    from gateway.cli.commands import main

    runner = CliRunner()

    def run(*args):
        result = runner.invoke(main, ["prompts", *args, "--dir", str(prompt_dir)])
        return result

    out = run("list")
    assert out.exit_code == 0
    assert "greet" in out.output and "canary=1:70% / 2:30%, production=1, staging=2" in out.output
    out = run("show", "greet@staging")
    assert out.exit_code == 0 and "# greet@2 (label staging)" in out.output and "v2: greet {{ name }}" in out.output
    out = run("diff", "greet", "1", "staging")
    assert out.exit_code == 0
    assert "--- greet@1" in out.output and "+++ greet@2" in out.output
    assert "-  content: 'v1: greet {{ name }}'" in out.output
    assert "+  content: 'v2: greet {{ name }} {{ count }} times'" in out.output
    out = run("render", "greet@2", "--var", "name=Ann", "--var", "count=4", "--json")
    assert out.exit_code == 0, out.output
    data = orjson.loads(out.output)
    assert data["messages"] == [{"role": "system", "content": "v2: greet Ann 4 times"}] and data["version"] == 2
    out = run("render", "greet@2", "--var", "count=x", "--var", "name=Ann")
    assert out.exit_code == 2 and "count" in out.output
    out = run("render", "greet")
    assert out.exit_code == 2 and "missing required variable 'name'" in out.output
    out = run("lock")
    assert out.exit_code == 0 and "updated (5 versions)" in out.output
    assert run("lock").output.endswith("up to date (5 versions)\n")
    out = run("show", "nope")
    assert out.exit_code == 2 and "unknown prompt 'nope'" in out.output


def test_auth_runs_before_prompts_and_check_config_lists_prompts(upstream, make_gateway, prompt_dir, tmp_path):
    import hashlib

    from gateway.cli.commands import main

    upstream.json(OK)
    key = "sk-gw-order-test"
    gw = make_gateway(prompt_config(upstream.url, prompt_dir, extra=(
        f"keys: [{{tenant: t, id: k1, sha256: {hashlib.sha256(key.encode()).hexdigest()}}}]\n")))
    r = httpx.post(f"{gw.url}/v1/chat/completions", headers={"x-gateway-prompt": "nope"},
                   json={"model": "gpt-test", "messages": MSG})
    assert r.status_code == 401  # rejected by auth before the prompt stage looks at the header
    r = httpx.post(f"{gw.url}/v1/chat/completions", headers={"x-gateway-prompt": "greet@canary",
                                                             "Authorization": f"Bearer {key}"},
                   json={"model": "gpt-test", "messages": MSG, "prompt": {"variables": {"name": "x"}}})
    assert r.status_code == 200
    # Without a user or header key, the tenant is the sticky key: every request of it gets one arm.
    arms = {httpx.post(f"{gw.url}/v1/chat/completions", headers={"x-gateway-prompt": "greet@canary",
                                                                 "Authorization": f"Bearer {key}"},
                       json={"model": "gpt-test", "messages": MSG, "prompt": {"variables": {"name": "x"}}}
                       ).headers["x-gateway-prompt-version"] for _ in range(8)}
    assert len(arms) == 1

    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(prompt_config(upstream.url, prompt_dir))
    out = CliRunner().invoke(main, ["check-config", str(cfg)])
    assert out.exit_code == 0, out.output
    assert "greeter -> fake/up-model (prompt greet@staging)" in out.output
    assert f"prompts (3) in {prompt_dir}:" in out.output
    assert "greet: versions 1, 2, 3; canary=1:70% / 2:30%, production=1, staging=2" in out.output
