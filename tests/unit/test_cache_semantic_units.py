"""The semantic cache's pure parts: what the question is, what must match exactly (the key
hash), which answers may be served to another question, and the config's checks."""

from __future__ import annotations

import orjson
import pytest

from gateway.cache.entry import JSON, SSE, CacheEntry
from gateway.cache.policy import CachePolicy, question
from gateway.cache.semantic import servable
from gateway.config import ConfigError, parse_config

USER = frozenset({"user"})

BASE = """
backends:
  m: {type: mock}
models:
  chat:
    targets: [{backend: m}]
    cache: {enabled: true, semantic: {enabled: true}}
  emb:
    targets: [{backend: m}]
cache:
  semantic: {embedding_model: emb}
"""


def test_the_question_is_the_text_of_the_chosen_roles_and_the_rest_keeps_everything_else():
    body = {"model": "chat", "temperature": 0, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is in"},
                                     {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
                                     {"type": "text", "text": "this picture?"}]},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "And its colour?"}]}
    text, rest = question("chat/completions", body, USER)
    assert text == "What is in\nthis picture?\n\nAnd its colour?"
    assert rest["messages"][0] == {"role": "system", "content": "Be brief."}
    assert rest["messages"][1]["content"][1] == body["messages"][1]["content"][1]  # the image must match
    assert [p.get("text") for p in rest["messages"][1]["content"]] == ["", None, ""]
    assert rest["messages"][2]["content"] == "A cat." and rest["messages"][3]["content"] == ""
    assert body["messages"][3]["content"] == "And its colour?"  # the request itself is untouched
    text, _ = question("chat/completions", body, frozenset({"system", "user"}))
    assert text.startswith("Be brief.\n\n")


def test_no_question_without_text():
    assert question("chat/completions", {"messages": [{"role": "system", "content": "x"}]}, USER) is None
    assert question("chat/completions", {"messages": [{"role": "user", "content": "  "}]}, USER) is None
    assert question("chat/completions", {"messages": "hi"}, USER) is None
    assert question("completions", {"prompt": [1, 2, 3]}, USER) is None  # token ids are not text
    assert question("embeddings", {"input": "hi"}, USER) is None
    assert question("completions", {"prompt": ["a b", "c"]}, USER) == ("a b\n\nc", {"prompt": ["", ""]})


def test_the_key_hash_ignores_the_question_and_covers_the_rest():
    policy = CachePolicy(parse_config(BASE).config)

    def key(text: str, tenant: str = "t", **params) -> str:
        body = {"model": "chat", "messages": [{"role": "user", "content": text}], "temperature": 0, **params}
        _, rest = question("chat/completions", body, USER)
        return policy.semantic_key("chat/completions", rest, tenant, None, None, "", False)

    base = key("What is the capital of France?")
    assert key("capital of France, please") == base
    assert len(base) == 64 and not base.startswith("llm-gateway")
    assert key("x", stream=True, user="u") == base  # transport fields never split it
    for other in (key("x", tenant="u"), key("x", temperature=0.5), key("x", model="other"),
                  key("x", tools=[{"type": "function", "function": {"name": "f"}}]),
                  key("x", response_format={"type": "json_object"}), key("x", max_tokens=5)):
        assert other != base


def _json(*reasons: str) -> CacheEntry:
    return CacheEntry(JSON, "chat/completions", orjson.dumps({"choices": [
        {"index": i, "message": {"content": 'say "finish_reason":"length"'}, "finish_reason": r}
        for i, r in enumerate(reasons)]}))


def test_only_answers_that_finished_of_their_own_accord_are_servable():
    assert servable(_json("stop")) and servable(_json("stop", "tool_calls"))
    assert not servable(_json("stop", "length")) and not servable(_json("content_filter"))
    stream = (b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
              b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n')
    assert servable(CacheEntry(SSE, "chat/completions", stream))
    assert not servable(CacheEntry(SSE, "chat/completions", stream.replace(b'"stop"', b'"length"')))
    assert not servable(CacheEntry(SSE, "chat/completions", stream.replace(b'"stop"', b"null")))


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.problems


def test_config_refuses_a_semantic_cache_it_cannot_run():
    assert parse_config(BASE).config.models["chat"].cache.semantic.enabled
    assert problems(BASE.replace("embedding_model: emb", "embedding_model: nope")) == [
        'models.chat.cache.semantic.embedding_model: unknown model "nope" (a public model of this gateway)']
    assert problems(BASE.replace("cache:\n  semantic: {embedding_model: emb}\n", "")) == [
        "models.chat.cache.semantic.embedding_model: required (here or in cache.semantic.embedding_model)"]
    assert problems(BASE + "telemetry: {enabled: false}\n") == [
        "models.chat.cache.semantic: needs telemetry (its entries live in the telemetry store); "
        "telemetry.enabled is false"]
    assert problems(BASE.replace("{enabled: true, semantic", "{enabled: false, semantic")) == [
        "models.chat.cache.semantic: the semantic cache needs the model's cache on "
        "(models.chat.cache.enabled or cache.enabled)"]
    assert "max_distance" in problems(BASE.replace("{embedding_model: emb}", "{embedding_model: emb, "
                                                   "max_distance: 3}"))[0]
    # Off unless a model opts in: defaults alone enable nothing.
    plain = parse_config(BASE.replace(", semantic: {enabled: true}", "")).config
    assert CachePolicy(plain).for_model("chat").semantic is None

