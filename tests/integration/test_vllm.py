"""End-to-end tests against a real vLLM server (CPU build) through the gateway.

vLLM runs from its own virtualenv (``bash tests/vllm/setup_venv.sh``) with a
tiny random-weight Llama built offline by loadtest/vllm_tiny_model.py; the
gateway runs as ``python -m gateway serve`` in a subprocess; the official
``openai`` SDK talks to both.

Without the vLLM venv these tests are skipped, except when ``CI`` is set: then
they fail, so that a broken setup cannot pass unnoticed.

Environment: VLLM_PYTHON / VLLM_VENV, VLLM_MODEL_DIR, VLLM_STARTUP_TIMEOUT
(see loadtest/vllm_server.py).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import openai
import pytest

from loadtest import vllm_server as vs
from tests.support.vllm import _unavailable

pytestmark = pytest.mark.vllm

REPO = Path(__file__).resolve().parents[2]
GATEWAY_MODEL = "tiny"
TRANSLATED_MODEL = "tiny-chat-only"  # the same server, asked /v1/responses through Chat Completions
MESSAGES = [{"role": "user", "content": "hello"}]


def _print_logs(request, *procs) -> None:
    """After failures in this module, show the servers' logs on the terminal."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    out = []
    for proc in procs:
        if proc is not None:
            out.append(f"\n===== {proc.name} log ({proc.log_path}), last lines =====\n"
                       f"{vs.tail(proc.log_path, 200)}\n")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            sys.stderr.write("".join(out))
    else:
        sys.stderr.write("".join(out))


@pytest.fixture(scope="module")
def vllm_server(request, tmp_path_factory):
    python = vs.vllm_python()
    if not python.exists():
        _unavailable(f"vLLM venv python {python} not found: run `bash tests/vllm/setup_venv.sh` "
                     "(or set VLLM_PYTHON)")
    t0 = time.monotonic()
    try:
        model = vs.build_model(python)
    except vs.ServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    build_s = time.monotonic() - t0

    log_dir = tmp_path_factory.mktemp("vllm")
    server = vs.VLLMServer(log_dir / "vllm.log", model=model, python=python).start()
    failed_before = request.session.testsfailed
    try:
        try:
            ready_s = server.wait()
        except vs.ServerError as exc:
            pytest.fail(str(exc), pytrace=False)
        server.rss_at_ready = vs.tree_rss_bytes(server.pid)
        print(f"\n[vllm] model ready in {build_s:.1f}s; server ready in {ready_s:.1f}s, "
              f"RSS {server.rss_at_ready / 2**20:.0f} MiB; log {server.log_path}")
        yield server
    finally:
        rss = vs.tree_rss_bytes(server.pid) if server.alive() else 0
        code = server.stop()
        print(f"\n[vllm] stopped (exit {code}); RSS before stop {rss / 2**20:.0f} MiB")
        if request.session.testsfailed > failed_before:
            _print_logs(request, server)


@pytest.fixture(scope="module")
def vllm_gateway(request, vllm_server, tmp_path_factory):
    """``python -m gateway serve`` with one vllm backend in front of the server."""
    tmp = tmp_path_factory.mktemp("gateway")
    cfg = tmp / "gateway.yaml"
    cfg.write_text(
        f"""\
backends:
  local-vllm:
    type: vllm
    base_url: {vllm_server.base_url}
  chat-only-vllm:
    type: vllm
    base_url: {vllm_server.base_url}
    responses: translate
models:
  {GATEWAY_MODEL}:
    targets:
      - backend: local-vllm
        model: {vs.SERVED_MODEL_NAME}
  {TRANSLATED_MODEL}:
    targets:
      - backend: chat-only-vllm
        model: {vs.SERVED_MODEL_NAME}
"""
    )
    port = vs.free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    proc = vs.ManagedProcess(
        "gateway",
        [sys.executable, "-m", "gateway", "serve", "--config", str(cfg),
         "--host", "127.0.0.1", "--port", str(port)],
        tmp / "gateway.log",
        env=env,
        cwd=tmp,  # state the gateway keeps in its working directory stays out of the repo
    ).start()
    proc.port = port
    proc.base_url = f"http://127.0.0.1:{port}/v1"
    failed_before = request.session.testsfailed
    try:
        try:
            ready_s = proc.wait_ready(lambda: vs.http_get("127.0.0.1", port, "/readyz")[0] == 200, 60)
        except vs.ServerError as exc:
            pytest.fail(str(exc), pytrace=False)
        print(f"\n[gateway] ready in {ready_s:.1f}s on port {port}; log {proc.log_path}")
        yield proc
    finally:
        proc.stop()
        if request.session.testsfailed > failed_before:
            _print_logs(request, proc)


@pytest.fixture(scope="module")
def direct(vllm_server):
    """SDK client talking to vLLM itself."""
    with openai.OpenAI(base_url=vllm_server.base_url, api_key="unused", max_retries=0,
                       timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def client(vllm_gateway):
    """SDK client talking to the gateway."""
    with openai.OpenAI(base_url=vllm_gateway.base_url, api_key="sk-test", max_retries=0,
                       timeout=60) as c:
        yield c


# -- vLLM on its own (tells a vLLM/setup problem apart from a gateway one) ----


def test_vllm_direct_sanity(direct):
    models = [m.id for m in direct.models.list().data]
    assert vs.SERVED_MODEL_NAME in models
    resp = direct.chat.completions.create(
        model=vs.SERVED_MODEL_NAME, messages=MESSAGES, max_tokens=8, extra_body={"ignore_eos": True}
    )
    assert resp.usage.completion_tokens == 8
    assert isinstance(resp.choices[0].message.content, str)


# -- through the gateway ------------------------------------------------------


def test_models_list_through_gateway(client):
    ids = [m.id for m in client.models.list().data]
    assert GATEWAY_MODEL in ids


def test_chat_completion(client, direct):
    resp = client.chat.completions.create(
        model=GATEWAY_MODEL, messages=MESSAGES, max_tokens=8, extra_body={"ignore_eos": True}
    )
    assert resp.object == "chat.completion"
    assert resp.usage.completion_tokens == 8
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 8
    choice = resp.choices[0]
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "length"
    # The gateway relays the upstream body: ``model`` is what vLLM reports.
    upstream = direct.chat.completions.create(
        model=vs.SERVED_MODEL_NAME, messages=MESSAGES, max_tokens=1
    )
    assert resp.model == upstream.model == vs.SERVED_MODEL_NAME


def test_chat_stream_with_usage(client):
    stream = client.chat.completions.create(
        model=GATEWAY_MODEL, messages=MESSAGES, max_tokens=8, stream=True,
        stream_options={"include_usage": True}, extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert len(chunks) >= 2
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert isinstance(text, str) and text
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens == 8
    assert all(c.usage is None for c in chunks[:-1])
    assert any(c.choices and c.choices[0].finish_reason == "length" for c in chunks)
    assert len({c.id for c in chunks}) == 1


def test_chat_stream_without_usage(client):
    stream = client.chat.completions.create(
        model=GATEWAY_MODEL, messages=MESSAGES, max_tokens=8, stream=True,
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks
    # The client did not ask for usage, so no chunk may carry it (a gateway that
    # requests include_usage upstream for its own accounting must strip it).
    assert [c.usage for c in chunks if c.usage is not None] == []
    assert all(c.choices for c in chunks), "usage-only chunk (choices == []) leaked to the client"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_completions(client):
    resp = client.completions.create(
        model=GATEWAY_MODEL, prompt="hello", max_tokens=5, extra_body={"ignore_eos": True}
    )
    assert resp.object == "text_completion"
    assert resp.usage.completion_tokens == 5
    assert isinstance(resp.choices[0].text, str) and resp.choices[0].text


def test_same_output_direct_and_through_gateway(client, direct):
    kwargs = {"messages": MESSAGES, "max_tokens": 16, "temperature": 0, "seed": 1234}
    upstream = direct.chat.completions.create(model=vs.SERVED_MODEL_NAME, **kwargs)
    via = client.chat.completions.create(model=GATEWAY_MODEL, **kwargs)
    assert via.choices[0].message.content == upstream.choices[0].message.content
    assert via.usage.completion_tokens == upstream.usage.completion_tokens == 16
    assert via.usage.prompt_tokens == upstream.usage.prompt_tokens

    # And streamed through the gateway, the deltas add up to the same text.
    stream = client.chat.completions.create(model=GATEWAY_MODEL, stream=True, **kwargs)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == upstream.choices[0].message.content


# -- Anthropic's Messages API, translated for vLLM ---------------------------------


def test_messages_api_with_the_anthropic_sdk(vllm_gateway, direct):
    """``/v1/messages`` to a vllm backend: max_tokens, usage, stop reason, the same text as chat
    (greedy), JSON and streamed, sync and async."""
    import asyncio

    import anthropic

    base = vllm_gateway.base_url.removesuffix("/v1")
    kwargs = {"max_tokens": 8, "messages": MESSAGES, "extra_body": {"ignore_eos": True, "temperature": 0}}
    with anthropic.Anthropic(base_url=base, api_key="sk-test", max_retries=0, timeout=60) as c:
        message = c.messages.create(model=GATEWAY_MODEL, **kwargs)
        assert message.type == "message" and message.stop_reason == "max_tokens"
        assert message.usage.output_tokens == 8 and message.usage.input_tokens > 0
        chat = direct.chat.completions.create(model=vs.SERVED_MODEL_NAME, messages=MESSAGES, max_tokens=8,
                                              temperature=0, extra_body={"ignore_eos": True})
        assert message.content[0].text == chat.choices[0].message.content
        assert message.usage.input_tokens == chat.usage.prompt_tokens
        with c.messages.stream(model=GATEWAY_MODEL, **kwargs) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert streamed == message.content[0].text
        assert final.usage.output_tokens == 8 and final.stop_reason == "max_tokens"
        events = [e.type for e in c.messages.create(model=GATEWAY_MODEL, stream=True, **kwargs)]
        assert events[0] == "message_start" and events[-2:] == ["message_delta", "message_stop"]

    async def run():
        async with anthropic.AsyncAnthropic(base_url=base, api_key="sk-test", max_retries=0, timeout=60) as ac:
            return await ac.messages.create(model=GATEWAY_MODEL, **kwargs)
    assert asyncio.run(run()).content[0].text == message.content[0].text


def test_responses_api_native_and_translated(client, direct):
    """``/v1/responses`` served by vLLM itself (native) and through its Chat Completions (a backend
    set to translate): both answer as the SDK expects, the translated one with chat's very text
    (greedy) and usage, JSON and streamed."""
    kwargs = {"input": "hello", "max_output_tokens": 8, "temperature": 0}
    chat = direct.chat.completions.create(model=vs.SERVED_MODEL_NAME, messages=MESSAGES, max_tokens=8,
                                          temperature=0)
    translated = client.responses.create(model=TRANSLATED_MODEL, **kwargs)
    assert translated.output_text == chat.choices[0].message.content
    assert (translated.usage.input_tokens, translated.usage.output_tokens) == \
        (chat.usage.prompt_tokens, chat.usage.completion_tokens)
    assert translated.status == ("incomplete" if chat.choices[0].finish_reason == "length" else "completed")
    with client.responses.stream(model=TRANSLATED_MODEL, **kwargs) as stream:
        events = list(stream)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == translated.output_text
    native = client.responses.create(model=GATEWAY_MODEL, **kwargs)
    assert native.object == "response" and native.usage.output_tokens > 0 and native.output_text
    events = list(client.responses.create(model=GATEWAY_MODEL, stream=True, **kwargs))
    assert events[0].type == "response.created" and events[-1].type in ("response.completed", "response.incomplete")
