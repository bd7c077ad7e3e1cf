"""Plugin hooks: verdicts (allow / modify / reject), timeouts and ``on_error``, loading, and the
built-in block list and ``max_tokens`` cap, through the gateway with the OpenAI SDK."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from gateway.compiled import compile_config
from gateway.config import ConfigError, parse_config
from gateway.config.access import PluginSpec
from gateway.plugins.stage import PluginLoadError, Verdict, build_plugin
from tests.support.access import CHAT, KEY_B, MSG, access_config, post
from tests.support.gateway import gateway_config, serve
from tests.support.polling import wait_for


def write_atomically(path, text: str) -> None:
    """Replace a watched config file in one step (the watcher never sees it half written)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# --- test plugins (loaded by import path "tests.integration.test_plugins:…") ---------------------------------
class Tagger:
    """Adds a system message (modify in place) and records after_response calls."""

    after_calls: list = []

    def __init__(self, tag: str = "tagged"):
        self.tag = tag

    async def before_request(self, ctx):
        ctx.body["messages"] = [{"role": "system", "content": self.tag}] + ctx.body["messages"]
        return Verdict.modify()

    async def after_response(self, ctx, response):
        self.after_calls.append((ctx.tenant, response.status))
        if not response.prepared:
            response.headers["x-tagged"] = self.tag


class Replacer:
    async def before_request(self, ctx):
        return Verdict.modify({**ctx.body, "model": ctx.body.get("switch_to", ctx.body["model"]), "temperature": 0})


class Gate:
    def __init__(self, word: str = "forbidden", status: int = 403, code: str | None = "gate_closed"):
        self.word, self.status, self.code = word, status, code

    async def before_request(self, ctx):
        if any(self.word in str(m.get("content")) for m in ctx.body.get("messages", [])):
            return Verdict.reject(f"no {self.word} here", status=self.status, code=self.code)
        return Verdict.allow()


class Slow:
    def __init__(self, seconds: float = 30.0):
        self.seconds = seconds

    async def before_request(self, ctx):
        await asyncio.sleep(self.seconds)


class Broken:
    async def before_request(self, ctx):
        raise RuntimeError("plugin bug")


class WrongType:
    async def before_request(self, ctx):
        return {"not": "a verdict"}


class Inspector:
    """Records what a hook is handed and tries to write what it may only read."""

    seen: list = []

    async def before_request(self, request):
        refused = []
        for name, value in (("tenant", "other-team"), ("model_requested", "mock-gpt"), ("endpoint", "embeddings")):
            try:
                setattr(request, name, value)
            except AttributeError:
                refused.append(name)
        try:
            request.metadata["injected"] = "x"
        except TypeError:
            refused.append("metadata")
        self.seen.append((type(request).__name__, request.tenant, request.endpoint, request.model_requested,
                          request.api_key_id != "", request.headers.get("user-agent") is not None, refused,
                          hasattr(request, "access") or hasattr(request, "raw_body")))
        request.body = {**request.body, "temperature": 0.25}
        return Verdict.modify()


def plugin_config(upstream_url: str, plugins: str, keys: bool = False, **kw) -> str:
    extra = "plugins:\n" + plugins
    if keys:
        return access_config(upstream_url, extra=extra, **kw)
    return gateway_config(upstream_url, extra="telemetry: {enabled: false}\n" + extra)


def stats(gw) -> dict:
    return {p["name"]: p for p in httpx.get(f"{gw.url}/admin/access").json()["plugins"]}


# --- verdicts -----------------------------------------------------------------------------------
def test_modify_in_place_reaches_upstream_and_after_response_runs(upstream, make_gateway):
    gw = make_gateway(plugin_config(upstream.url, '  - {path: "tests.integration.test_plugins:Tagger", settings: {tag: hi-there}}\n'))
    upstream.json(CHAT)
    Tagger.after_calls.clear()
    raw = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0).chat.completions.with_raw_response.create(
        model="gpt-test", messages=MSG)
    sent = upstream.last.json()
    assert sent["messages"][0] == {"role": "system", "content": "hi-there"} and sent["model"] == "up-model"
    assert raw.headers["x-tagged"] == "hi-there" and Tagger.after_calls == [("", 200)]
    s = stats(gw)["Tagger"]
    assert s["modified"] == 1 and s["calls"] == 2 and s["errors"] == 0  # before + after


def test_modify_with_a_new_body_and_a_model_switch_is_rechecked(upstream, make_gateway):
    gw = make_gateway(plugin_config(upstream.url, '  - {path: "tests.integration.test_plugins:Replacer"}\n', keys=True))
    upstream.json(CHAT)
    r = post(gw, body={"model": "gpt-test", "messages": MSG, "switch_to": "same-name"})
    assert r.status_code == 200 and upstream.last.json()["model"] == "same-name"
    assert upstream.last.json()["temperature"] == 0
    # team-a may not use mock-gpt: a plugin cannot route around the key's models
    r = post(gw, body={"model": "gpt-test", "messages": MSG, "switch_to": "mock-gpt"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"


def test_plugins_get_a_read_only_view_not_the_request_context(upstream, make_gateway):
    gw = make_gateway(plugin_config(upstream.url, '  - {path: "tests.integration.test_plugins:Inspector"}\n', keys=True))
    upstream.json(CHAT)
    Inspector.seen.clear()
    assert post(gw, body={"model": "gpt-test", "messages": MSG}).status_code == 200
    assert Inspector.seen == [("PluginRequest", "team-a", "chat/completions", "gpt-test", True, True,
                               ["tenant", "model_requested", "endpoint", "metadata"], False)]
    # a body replaced on the view and confirmed with modify() is what goes upstream
    assert upstream.last.json()["temperature"] == 0.25


def test_reject_with_status_and_code_never_reaches_upstream(upstream, make_gateway):
    gw = make_gateway(plugin_config(upstream.url, '  - {path: "tests.integration.test_plugins:Gate"}\n'))
    upstream.json(CHAT)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "forbidden fruit"}])
    assert info.value.body == {"message": "no forbidden here", "type": "invalid_request_error", "param": None,
                               "code": "gate_closed"}
    assert not upstream.received
    assert client.chat.completions.create(model="gpt-test", messages=MSG).choices
    s = stats(gw)["Gate"]
    assert s["rejected"] == 1 and s["allowed"] == 1


@pytest.mark.parametrize("plugin,kind", [("Slow", "timeouts"), ("Broken", "errors"), ("WrongType", "errors")])
def test_failing_plugins_follow_on_error(upstream, make_gateway, plugin, kind, caplog):
    gw = make_gateway(plugin_config(upstream.url, f"""\
  - {{path: "tests.integration.test_plugins:{plugin}", name: lenient, timeout_ms: 50, on_error: allow}}
""", keys=False))
    strict = make_gateway(plugin_config(upstream.url, f"""\
  - {{path: "tests.integration.test_plugins:{plugin}", name: strict, timeout_ms: 50, on_error: reject}}
"""))
    upstream.json(CHAT)
    t0 = time.perf_counter()
    assert post(gw, key=None).status_code == 200
    assert time.perf_counter() - t0 < 10  # the 30 s hook was cut off at its 50 ms timeout
    r = post(strict, key=None)
    assert r.status_code == 503 and r.json()["error"]["code"] == "plugin_failed"
    assert "plugin bug" not in r.text  # the exception text stays in the gateway
    assert len(upstream.received) == 1
    assert stats(gw)["lenient"][kind] == 1 and stats(strict)["strict"][kind] == 1
    assert "plugin lenient before_request" in caplog.text and "allowing the request" in caplog.text


def test_tenant_scoped_plugins(upstream, make_gateway):
    plugins = '  - {path: "tests.integration.test_plugins:Gate", tenants: ["team-b"], settings: {word: hi}}\n'
    gw = make_gateway(plugin_config(upstream.url, plugins, keys=True))
    upstream.json(CHAT)
    assert post(gw).status_code == 200  # team-a: not checked
    assert post(gw, key=KEY_B).status_code == 403  # team-b: "hi" is blocked


def test_plugins_run_after_auth(upstream, make_gateway):
    from gateway.access.auth import ACCESS
    from gateway.app import RUNTIME

    gw = make_gateway(plugin_config(upstream.url, '  - {path: "tests.integration.test_plugins:Broken", on_error: reject}\n',
                                    keys=True))
    layer = gw.app[ACCESS]
    stages = gw.app[RUNTIME].current.stages
    assert stages.index(layer.access_stage) < stages.index(layer.plugin_stage)
    assert post(gw, key=None).status_code == 401  # auth first: the plugin never saw it
    assert stats(gw)["Broken"]["calls"] == 0


# --- loading ------------------------------------------------------------------------------------
def test_plugin_loaded_from_a_file_path(upstream, make_gateway, tmp_path):
    hook = tmp_path / "my_hook.py"
    hook.write_text("from gateway.plugins.stage import Verdict\n\n"
                    "class Hook:\n"
                    "    def __init__(self, limit):\n        self.limit = limit\n"
                    "    async def before_request(self, ctx):\n"
                    "        if len(ctx.body['messages']) > self.limit:\n"
                    "            return Verdict.reject('too many messages', status=422, code='too_many')\n")
    gw = make_gateway(plugin_config(upstream.url, f'  - {{path: "{hook}:Hook", settings: {{limit: 1}}}}\n'))
    upstream.json(CHAT)
    assert post(gw, key=None).status_code == 200
    r = post(gw, key=None, body={"model": "gpt-test", "messages": MSG * 2})
    assert r.status_code == 422 and r.json()["error"]["code"] == "too_many"


def test_bad_plugin_paths_are_config_errors_and_bad_settings_fail_the_build(upstream):
    for path, needle in (("nope.module:X", "No module named 'nope'"), ("tests.integration.test_plugins:Missing", "no attribute"),
                         ("/no/such/file.py:X", "no such file"), ("unknown-name", "neither module:attr")):
        with pytest.raises(ConfigError) as info:
            compile_config(parse_config(plugin_config(upstream.url, f'  - {{path: "{path}"}}\n')))
        assert any(p.startswith("plugins[0].path:") and needle in p for p in info.value.problems), info.value.problems
    with pytest.raises(PluginLoadError, match="unexpected keyword"):
        build_plugin(PluginSpec(path="tests.integration.test_plugins:Slow", settings={"nope": 1}))
    with pytest.raises(PluginLoadError, match="neither before_request nor after_response"):
        build_plugin(PluginSpec(path="tests.support.access:MSG"))
    dup = '  - {path: "tests.integration.test_plugins:Slow"}\n  - {path: "tests.integration.test_plugins:Slow"}\n'
    with pytest.raises(ConfigError, match="duplicate plugin name"):
        parse_config(plugin_config(upstream.url, dup))


def test_a_reload_with_a_broken_plugin_keeps_the_running_config(upstream, tmp_path):
    from gateway.app import WATCHER

    upstream.json(CHAT)
    path = tmp_path / "gateway.yaml"
    good = plugin_config(upstream.url, '  - {path: "tests.integration.test_plugins:Gate"}\n') + \
        "server: {reload_interval_s: 0.05}\n"
    write_atomically(path, good)
    with serve(path=path) as gw:
        first = httpx.get(f"{gw.url}/readyz").json()["config_hash"]
        write_atomically(path, good.replace("tests.integration.test_plugins:Gate", "tests.integration.test_plugins:Gate, settings: {bogus: 1}"))
        wait_for(lambda: gw.app[WATCHER].status()["last_error"], what="the broken plugin to be refused")
        assert httpx.get(f"{gw.url}/readyz").json()["config_hash"] == first
        assert post(gw, key=None, body={"model": "gpt-test", "messages": [
            {"role": "user", "content": "forbidden"}]}).status_code == 403  # the old plugin still runs


def test_a_reload_naming_a_plugin_that_does_not_import_is_refused_naming_its_path(upstream, tmp_path):
    from gateway.app import WATCHER

    upstream.json(CHAT)
    path = tmp_path / "gateway.yaml"
    good = plugin_config(upstream.url, '  - {path: "tests.integration.test_plugins:Gate"}\n') + \
        "server: {reload_interval_s: 0.05}\n"
    write_atomically(path, good)
    with serve(path=path) as gw:
        first = httpx.get(f"{gw.url}/readyz").json()["config_hash"]
        write_atomically(path, good.replace("tests.integration.test_plugins:Gate", "nope.module:Gate"))
        wait_for(lambda: gw.app[WATCHER].status()["last_error"], what="the plugin path to be refused")
        error = gw.app[WATCHER].status()["last_error"]
        assert "plugins[0].path: cannot import nope.module:Gate" in error and "No module named 'nope'" in error
        assert httpx.get(f"{gw.url}/readyz").json()["config_hash"] == first
        assert post(gw, key=None, body={"model": "gpt-test", "messages": [
            {"role": "user", "content": "forbidden"}]}).status_code == 403  # the old plugin still runs


# --- built-ins ----------------------------------------------------------------------------------
def test_blocklist_rejects_with_400_and_checks_every_prompt_string(upstream, make_gateway):
    plugins = """\
  - path: blocklist
    settings:
      keywords: [project nightingale, secret sauce]
      patterns: ['\\bDROP\\s+TABLE\\b', 'ssn:\\s*\\d{3}-\\d{2}-\\d{4}']
"""
    gw = make_gateway(plugin_config(upstream.url, plugins))
    upstream.json(CHAT)
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0)
    blocked = [
        [{"role": "user", "content": "Tell me about Project Nightingale"}],
        [{"role": "system", "content": "ok"}, {"role": "user", "content": [
            {"type": "text", "text": "please drop   table users"}]}],
        [{"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function", "function": {
            "name": "f", "arguments": "{\"q\": \"the secret sauce\"}"}}]}],
        [{"role": "user", "content": "my ssn: 123-45-6789"}],
    ]
    for messages in blocked:
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="gpt-test", messages=messages)
        assert info.value.body["code"] == "content_blocked"
        assert "nightingale" not in info.value.body["message"].lower()  # the matched text is not echoed
    assert not upstream.received
    for fine in ("nightingales sing", "saucepan secrets", "table for two"):
        assert client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": fine}]).choices
    r = httpx.post(f"{gw.url}/v1/completions", json={"model": "gpt-test", "prompt": ["x", "secret sauce"]})
    assert r.status_code == 400


def test_max_tokens_cap_per_tenant(upstream, make_gateway):
    plugins = """\
  - path: max_tokens_cap
    settings: {default: 100, tenants: {team-b: 1000}}
  - {path: max_tokens_cap, name: strict, tenants: [team-b], settings: {default: 2000, mode: reject}}
"""
    gw = make_gateway(plugin_config(upstream.url, plugins, keys=True))
    upstream.json(CHAT)
    post(gw, body={"model": "gpt-test", "messages": MSG, "max_tokens": 500})
    assert upstream.last.json()["max_tokens"] == 100  # clamped for team-a
    post(gw, body={"model": "gpt-test", "messages": MSG, "max_completion_tokens": 50})
    assert upstream.last.json()["max_completion_tokens"] == 50 and "max_tokens" not in upstream.last.json()
    post(gw)
    assert upstream.last.json()["max_tokens"] == 100  # set when missing
    post(gw, key=KEY_B, body={"model": "gpt-test", "messages": MSG, "max_tokens": 1500})
    assert upstream.last.json()["max_tokens"] == 1000  # team-b's own cap
    n = len(upstream.received)
    caps = build_plugin(PluginSpec(path="max_tokens_cap", settings={"tenants": {"team-*": 10}}))
    assert caps.cap_for("team-x") == 10 and caps.cap_for("other") is None
    strict = build_plugin(PluginSpec(path="max_tokens_cap", settings={"default": 5, "mode": "reject"}))

    class Ctx:
        endpoint, tenant, body = "chat/completions", "t", {"model": "m", "max_tokens": 6}

    verdict = asyncio.run(strict.before_request(Ctx))
    assert verdict.action == "reject" and verdict.code == "max_tokens_exceeded"
    assert len(upstream.received) == n


def test_plugins_work_without_keys(upstream, make_gateway):
    from gateway.access.auth import ACCESS
    from gateway.app import RUNTIME

    gw = make_gateway(plugin_config(upstream.url, "  - {path: max_tokens_cap, settings: {default: 7}}\n"))
    stages = gw.app[RUNTIME].current.stages
    assert gw.app[ACCESS].access_stage not in stages and gw.app[ACCESS].plugin_stage in stages
    upstream.json(CHAT)
    assert post(gw, key=None).status_code == 200 and upstream.last.json()["max_tokens"] == 7


def test_stage_order_access_prompts_plugins_cache(upstream, make_gateway):
    """Plugins see the request after prompt injection (PII in prompt variables is redacted too);
    the cache keys the request as all of them left it."""
    from gateway.access.auth import ACCESS
    from gateway.app import FEATURES, RUNTIME
    from gateway.cache import CACHE
    from gateway.prompts.stage import prompt_stage

    gw = make_gateway(plugin_config(upstream.url, "  - {path: max_tokens_cap, settings: {default: 7}}\n",
                                    keys=True) + "cache: {enabled: true}\n")
    layer = gw.app[ACCESS]
    observe = next(f for f in gw.app[FEATURES] if f.name == "observability").observe  # metrics are on by default
    conversations = next(f for f in gw.app[FEATURES] if f.name == "conversations").conversations  # the mock's
    ownership = next(f for f in gw.app[FEATURES] if f.name == "ownership").ownership  # keys: on by default
    assert list(gw.app[RUNTIME].current.stages) == [observe, layer.access_stage, ownership, prompt_stage,
                                                    layer.plugin_stage, conversations, gw.app[CACHE]]
