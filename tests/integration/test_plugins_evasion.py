"""The block list and PII redaction against simple evasion, through the gateway and a fake
upstream: separators, invisible characters, combining marks, fullwidth and look-alike letters;
every text field of chat, completions, responses, Anthropic messages and embeddings requests,
tool definitions included. A request that matches nothing reaches the upstream byte for byte."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from tests.support.access import CHAT
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import gateway_config, serve

BLOCKLIST = """\
plugins:
  - path: blocklist
    settings:
      keywords: [project nightingale]
      patterns: ['\\bdrop\\s+table\\b']
"""


@pytest.fixture(scope="module")
def upstream_mod():
    with FakeUpstream() as fake:
        fake.json(CHAT)
        yield fake


def _gateway(upstream: FakeUpstream, plugins: str):
    return serve(gateway_config(
        upstream.url, extra="telemetry: {enabled: false}\n" + plugins))


@pytest.fixture(scope="module")
def blocking(upstream_mod):
    with _gateway(upstream_mod, BLOCKLIST) as gw:
        yield gw


@pytest.fixture(scope="module")
def redacting(upstream_mod):
    with _gateway(upstream_mod, "plugins:\n  - {path: pii}\n") as gw:
        yield gw


def chat(text: str) -> dict:
    return {"model": "same-name", "messages": [{"role": "user", "content": text}]}


# --- the block list: each evasion of "project nightingale" ---------------------------------------
EVASIONS = {
    "double space": "tell me about project  nightingale",
    "newline": "tell me about project\nnightingale",
    "underscore": "tell me about project_nightingale",
    "dash and dots": "tell me about project-.-nightingale",
    "no-break space": "tell me about project\u00a0nightingale",
    "ideographic space": "tell me about project\u3000nightingale",
    "zero-width space": "tell me about proj\u200bect night\u200bingale",
    "zero-width joiner and non-joiner": "tell me about pro\u200dject nigh\u200ctingale",
    "word joiner and BOM": "tell me about project\u2060 night\ufeffingale",
    "soft hyphen": "tell me about pro\u00adject night\u00adingale",
    "bidi controls": "tell me about proj\u202eect\u202c nightingale",
    "combining marks": "tell me about p\u0332r\u0332o\u0332j\u0332e\u0332c\u0332t\u0332 nightingale",
    "accents": "tell me about prôjéct nightïngale",
    "fullwidth letters": "tell me about \uff50\uff52\uff4f\uff4a\uff45\uff43\uff54 \uff4e\uff49\uff47\uff48\uff54\uff49\uff4e\uff47\uff41\uff4c\uff45",
    "cyrillic look-alikes": "tell me about \u0440r\u043ej\u0435\u0441t nightingal\u0435",
    "greek look-alikes": "tell me about pr\u03bfject n\u03b9ghtingale",
    "upper case": "TELL ME ABOUT PROJECT NIGHTINGALE",
    "pattern with underscore": "please drop_table users",
    "pattern with zero-width space": "please dr\u200bop table users",
    # invisible characters standing where the space was: a model reads two words
    "zero-width space between the words": "tell me about project\u200bnightingale",
    "right-to-left mark between the words": "tell me about Project\u200fNightingale",
    "invisible separator between the words": "tell me about project\u2063nightingale",
    "grapheme joiner between the words": "tell me about project\u034fnightingale",
    "Hangul filler between the words": "tell me about project\u3164nightingale",
    "Hangul filler inside a word": "tell me about proj\u115fect nighting\uffa0ale",
    "pattern with a zero-width space for its space": "please drop\u200btable users",
}


@pytest.mark.parametrize("text", list(EVASIONS.values()), ids=list(EVASIONS))
def test_blocklist_sees_through_evasion(blocking, upstream_mod, text):
    n = len(upstream_mod.received)
    client = openai.OpenAI(base_url=f"{blocking.url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": text}])
    assert info.value.body["code"] == "content_blocked"
    assert len(upstream_mod.received) == n  # nothing went upstream


TOOL = {"type": "function", "function": {
    "name": "lookup", "description": "Looks things up",
    "parameters": {"type": "object", "properties": {
        "q": {"type": "string", "description": "what to look up"},
        "opts": {"type": "object", "properties": {"depth": {"type": "integer", "description": "how deep"}}}}}}}


def _with(path: list, value: str, base: dict) -> dict:
    body = orjson.loads(orjson.dumps(base))
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return body


CHAT_BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "tools": [TOOL]}
FIELDS = {
    "message name": ("chat/completions", _with(["messages", 0, "name"], "project_nightingale", CHAT_BODY)),
    "text part": ("chat/completions", _with(["messages", 0, "content"], [
        {"type": "text", "text": "ok"}, {"type": "text", "text": "project nightingale"}], CHAT_BODY)),
    "tool description": ("chat/completions", _with(["tools", 0, "function", "description"],
                                                   "Finds Project Nightingale files", CHAT_BODY)),
    "tool parameter description": ("chat/completions", _with(
        ["tools", 0, "function", "parameters", "properties", "q", "description"], "project nightingale id", CHAT_BODY)),
    "nested parameter description": ("chat/completions", _with(
        ["tools", 0, "function", "parameters", "properties", "opts", "properties", "depth", "description"],
        "project\u00a0nightingale depth", CHAT_BODY)),
    "parameter schema title": ("chat/completions", _with(
        ["tools", 0, "function", "parameters", "properties", "q", "title"], "Project Nightingale", CHAT_BODY)),
    "tool name": ("chat/completions", _with(["tools", 0, "function", "name"], "project_nightingale", CHAT_BODY)),
    "tool call arguments": ("chat/completions", {"model": "gpt-test", "messages": [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function", "function": {
            "name": "f", "arguments": "{\"q\": \"project nightingale\"}"}}]}]}),
    "legacy functions": ("chat/completions", {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}],
                                              "functions": [{"name": "f", "description": "project nightingale"}]}),
    "completions prompt list": ("completions", {"model": "gpt-test", "prompt": ["fine", "project nightingale"]}),
    "completions suffix": ("completions", {"model": "gpt-test", "prompt": "fine", "suffix": "project nightingale"}),
    "embeddings input": ("embeddings", {"model": "gpt-test", "input": ["fine", "project\u200b nightingale"]}),
    "responses input string": ("responses", {"model": "gpt-test", "input": "project nightingale"}),
    "responses instructions": ("responses", {"model": "gpt-test", "input": "hi",
                                             "instructions": "talk about project nightingale"}),
    "responses input items": ("responses", {"model": "gpt-test", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "project nightingale"}]}]}),
    "responses function output": ("responses", {"model": "gpt-test", "input": [
        {"type": "function_call_output", "call_id": "c", "output": "project nightingale"}]}),
    "responses tool (flat shape)": ("responses", {"model": "gpt-test", "input": "hi", "tools": [
        {"type": "function", "name": "f", "description": "project nightingale",
         "parameters": {"type": "object", "properties": {}}}]}),
    "anthropic system blocks": ("messages", {"model": "gpt-test", "max_tokens": 5,
                                             "system": [{"type": "text", "text": "project nightingale"}],
                                             "messages": [{"role": "user", "content": "hi"}]}),
    "anthropic tool_use input": ("messages", {"model": "gpt-test", "max_tokens": 5, "messages": [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f",
                                           "input": {"q": {"deep": ["project nightingale"]}}}]}]}),
    "anthropic tool_result": ("messages", {"model": "gpt-test", "max_tokens": 5, "messages": [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                      "content": [{"type": "text", "text": "project nightingale"}]}]}]}),
    "tool parameter enum": ("chat/completions", _with(
        ["tools", 0, "function", "parameters", "properties", "q", "enum"], ["weather", "project nightingale"],
        CHAT_BODY)),
    "tool parameter default": ("chat/completions", _with(
        ["tools", 0, "function", "parameters", "properties", "q", "default"], "Project Nightingale", CHAT_BODY)),
    "structured output schema": ("chat/completions", {
        "model": "gpt-test", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {
            "type": "object", "properties": {"a": {"type": "string", "description": "project nightingale"}}}}}}),
    "responses text format schema": ("responses", {
        "model": "gpt-test", "input": "hi", "text": {"format": {
            "type": "json_schema", "name": "r", "schema": {"type": "string", "enum": ["project nightingale"]}}}}),
    "vllm chat_template": ("chat/completions", {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}],
                                                "chat_template": "Discuss project nightingale. {{ messages }}"}),
    "vllm chat_template_kwargs": ("chat/completions", {
        "model": "gpt-test", "messages": [{"role": "user", "content": "hi"}],
        "chat_template": "{{ topic }}", "chat_template_kwargs": {"topic": "project nightingale"}}),
    "anthropic tool definition": ("messages", {"model": "gpt-test", "max_tokens": 5,
                                               "messages": [{"role": "user", "content": "hi"}],
                                               "tools": [{"name": "f", "description": "x", "input_schema": {
                                                   "type": "object", "properties": {"q": {
                                                       "type": "string", "description": "project nightingale"}}}}]}),
}


@pytest.mark.parametrize("endpoint,body", list(FIELDS.values()), ids=list(FIELDS))
def test_blocklist_scans_every_text_field(blocking, upstream_mod, endpoint, body):
    n = len(upstream_mod.received)
    r = httpx.post(f"{blocking.url}/v1/{endpoint}", json=body, timeout=30)
    if endpoint == "messages":  # refused in Anthropic's error shape, which has no code
        assert r.status_code == 400 and r.json()["type"] == "error", r.text
        assert r.json()["error"]["type"] == "invalid_request_error" and "block" in r.json()["error"]["message"]
    else:
        assert r.status_code == 400 and r.json()["error"]["code"] == "content_blocked", r.text
    assert len(upstream_mod.received) == n


def test_a_request_that_matches_nothing_is_forwarded_byte_for_byte(blocking, upstream_mod):
    # Invisible, look-alike and fullwidth characters, but nothing the rules name.
    raw = orjson.dumps(chat("n\u00adightingales sing in the ｐｒｏｊｅｃｔ\u200b garden, \u0440lease")) \
        .replace(b'"messages"', b' "messages"')  # not how orjson would write it: proves the bytes are the client's
    r = httpx.post(f"{blocking.url}/v1/chat/completions", content=raw,
                   headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 200
    assert upstream_mod.last.body == raw
    for fine in ("nightingales sing", "a project about nightingales", "table for two, drop by"):
        assert httpx.post(f"{blocking.url}/v1/chat/completions", json=chat(fine), timeout=30).status_code == 200


# --- PII: the forms the plain patterns missed ----------------------------------------------------
PII = {
    "card with dots": ("card 4111.1111.1111.1111 thanks", "card [CARD] thanks"),
    "card with slashes": ("card 4111/1111/1111/1111.", "card [CARD]."),
    "card with underscores": ("card 4111_1111_1111_1111", "card [CARD]"),
    "card split by zero-width spaces": ("card 4\u200b1\u200b1\u200b1\u200b1111\u200b1111\u200b1111 ok", "card [CARD] ok"),
    "card with soft hyphens": ("card 4111\u00ad1111\u00ad1111\u00ad1111", "card [CARD]"),
    "card in fullwidth digits": ("card \uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 "
                                 "\uff11\uff11\uff11\uff11 ok", "card [CARD] ok"),
    "card in arabic-indic digits": ("card \u0664\u0661\u0661\u0661 \u0661\u0661\u0661\u0661 \u0661\u0661\u0661\u0661 "
                                    "\u0661\u0661\u0661\u0661 ok", "card [CARD] ok"),
    "card with en dashes": ("card 4111\u20131111\u20131111\u20131111", "card [CARD]"),
    "card with non-breaking hyphens": ("card 4111\u20111111\u20111111\u20111111", "card [CARD]"),
    "card followed by an expiry date": ("card 4111 1111 1111 1111 12/25", "card [CARD] 12/25"),
    "fullwidth at sign": ("mail alice\uff20example.com now", "mail [EMAIL] now"),
    "small at sign": ("mail alice\ufe6bexample.com now", "mail [EMAIL] now"),
    "fullwidth e-mail": ("mail \uff41\uff4c\uff49\uff43\uff45\uff20\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45"
                         "\uff0e\uff43\uff4f\uff4d now", "mail [EMAIL] now"),
    "e-mail with a zero-width space": ("mail alice@exam\u200bple.com now", "mail [EMAIL] now"),
    "e-mail with cyrillic letters": ("mail \u0430lice@ex\u0430mple.com now", "mail [EMAIL] now"),
    "phone with fullwidth digits": ("call +1-\uff15\uff15\uff15-123-4567 now", "call [PHONE] now"),
    "card split by Hangul fillers": ("card 4111\u31641111\u31641111\u31641111 ok", "card [CARD] ok"),
    "e-mail with ideographic full stops": ("mail alice@example\u3002com now", "mail [EMAIL] now"),
    "e-mail with halfwidth ideographic full stops": ("mail alice@mail\uff61example\uff61com now", "mail [EMAIL] now"),
}


@pytest.mark.parametrize("text,expected", list(PII.values()), ids=list(PII))
def test_pii_sees_through_evasion(redacting, upstream_mod, text, expected):
    client = openai.OpenAI(base_url=f"{redacting.url}/v1", api_key="x", max_retries=0)
    client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": text}])
    assert upstream_mod.last.json()["messages"][0]["content"] == expected


def test_pii_masks_only_the_match_and_leaves_the_rest_as_sent(redacting, upstream_mod):
    text = "Hi\u00a0there\u200b — pay 4111\u200b1111\u200b1111\u200b1111, résumé attached, ｔｈａｎｋｓ"
    httpx.post(f"{redacting.url}/v1/chat/completions", json=chat(text), timeout=30)
    assert upstream_mod.last.json()["messages"][0]["content"] == \
        "Hi\u00a0there\u200b — pay [CARD], résumé attached, ｔｈａｎｋｓ"
    clean = orjson.dumps(chat("n\u00e9e 2024/01/15, pi 3.14159265358979, ｆｉｎｅ"))
    httpx.post(f"{redacting.url}/v1/chat/completions", content=clean,
               headers={"Content-Type": "application/json"}, timeout=30)
    assert upstream_mod.last.body == clean


@pytest.mark.parametrize("endpoint,body,where", [
    ("chat/completions", _with(["tools", 0, "function", "description"], "mail alice＠example.com", CHAT_BODY),
     ["tools", 0, "function", "description"]),
    ("chat/completions", _with(["tools", 0, "function", "parameters", "properties", "q", "description"],
                               "e.g. 4111.1111.1111.1111", CHAT_BODY),
     ["tools", 0, "function", "parameters", "properties", "q", "description"]),
    ("completions", {"model": "gpt-test", "prompt": ["ok", "card 4111/1111/1111/1111"]}, ["prompt", 1]),
    ("embeddings", {"model": "gpt-test", "input": "alice＠example.com"}, ["input"]),
    ("responses", {"model": "gpt-test", "input": "hi", "instructions": "reply to alice＠example.com"},
     ["instructions"]),
    ("messages", {"model": "gpt-test", "max_tokens": 5, "system": "card 4111.1111.1111.1111",
                  "messages": [{"role": "user", "content": "hi"}]}, ["messages", 0, "content"]),  # the system message
    ("chat/completions", _with(["tools", 0, "function", "parameters", "properties", "q", "enum"],
                               ["bob", "alice＠example.com"], CHAT_BODY),
     ["tools", 0, "function", "parameters", "properties", "q", "enum", 1]),
], ids=["tool description", "parameter description", "completions prompt list", "embeddings input",
        "responses instructions", "anthropic system", "parameter enum"])
def test_pii_redacts_every_text_field(redacting, upstream_mod, endpoint, body, where):
    r = httpx.post(f"{redacting.url}/v1/{endpoint}", json=body, timeout=30)
    assert r.status_code == 200, r.text
    node = upstream_mod.last.json()
    for key in where:
        node = node[key]
    assert "[EMAIL]" in node or "[CARD]" in node, node
    assert "4111" not in node and "alice" not in node
