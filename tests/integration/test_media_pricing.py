"""Audio and image usage priced at its own rates, end to end.

Each request goes through the gateway (the official OpenAI SDK as client, uploads as in-memory
files) to a fake backend answering in the endpoint's own usage shape: whisper-1's duration,
gpt-4o-transcribe's tokens with audio details (streamed too), gpt-image-1's image tokens, an
audio chat model's audio tokens in and out. The row in chDB must carry the duration and the
cost at each kind's rate; a kind of usage whose price has no rate is NULL, never a guess.
"""

from __future__ import annotations

import hashlib
import io

import httpx
import openai
import orjson
import pytest

from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import serve
from tests.support.telemetry import chdb_dsn, isolate_telemetry_data, tdb, telemetry_yaml, wait_for  # noqa: F401
from tests.support.telemetry_rows import flush, select

KEY = "sk-gw-media-prices-0123456789abcdef"
WAV = b"RIFF" + bytes(2000)
MSG = [{"role": "user", "content": "hi"}]


def _config(url: str) -> str:
    return f"""
backends:
  up: {{type: openai, base_url: "{url}", api_key: sk-up}}
models:
  whisper-1: {{targets: [{{backend: up}}]}}
  house-stt: {{targets: [{{backend: up, model: whisper-1}}]}}
  gpt-4o-transcribe: {{targets: [{{backend: up}}]}}
  gpt-4o-mini-transcribe: {{targets: [{{backend: up}}]}}
  gpt-image-1: {{targets: [{{backend: up}}]}}
  gpt-4o-audio-preview: {{targets: [{{backend: up}}]}}
  house-chat: {{targets: [{{backend: up, model: gpt-4o-audio-preview}}]}}
keys:
  - {{tenant: t, sha256: {hashlib.sha256(KEY.encode()).hexdigest()}, endpoints: ["*"]}}
pricing:
  models:
    house-stt: {{audio_minute: 0.012}}
    house-chat: {{input: 1.0, output: 2.0}}
"""


@pytest.fixture
def env(tmp_path, tdb):
    with FakeUpstream() as up:
        with serve(_config(up.url) + telemetry_yaml(chdb_dsn(), tdb, tmp_path / "log")) as srv:
            yield srv, up


def _rows(srv, tdb, n: int) -> dict[str, dict]:
    wait_for(lambda: httpx.get(f"{srv.url}/admin/telemetry").json()["written"] >= n, what=f"{n} records")
    flush(srv)
    rows = select(tdb, "SELECT * FROM llm_requests")
    assert len(rows) == n
    return {r["client_request_id"]: r for r in rows}


def _rid(name: str) -> dict:
    return {"extra_headers": {"x-request-id": name}}


def _wav() -> io.BytesIO:
    f = io.BytesIO(WAV)
    f.name = "a.wav"
    return f


def _chat(usage: dict) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-audio-preview-2024-12-17",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": usage}


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK marks translations so
def test_audio_and_image_usage_each_at_its_own_rate(env, tdb):
    srv, up = env
    client = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=KEY, max_retries=0)

    # whisper-1 reports the audio's duration, no tokens: the shipped $0.006 a minute.
    up.json({"text": "hello", "usage": {"type": "duration", "seconds": 90}}, times=1)
    got = client.audio.transcriptions.create(file=_wav(), model="whisper-1", **_rid("whisper"))
    assert (got.text, got.usage.seconds) == ("hello", 90)
    assert up.last.body.count(WAV) == 1  # the in-memory file went on whole
    up.json({"text": "hello", "usage": {"type": "duration", "seconds": 30.5}}, times=1)
    client.audio.translations.create(file=_wav(), model="whisper-1", **_rid("translation"))
    # A public name with a price of its own wins over the shipped price of the model it serves.
    up.json({"text": "hello", "usage": {"type": "duration", "seconds": 45}}, times=1)
    client.audio.transcriptions.create(file=_wav(), model="house-stt", **_rid("house-stt"))

    # gpt-4o-transcribe: text and audio input tokens at their own rates.
    tokens = {"type": "tokens", "input_tokens": 120, "output_tokens": 15, "total_tokens": 135,
              "input_token_details": {"text_tokens": 20, "audio_tokens": 100}}
    up.json({"text": "hello", "usage": tokens}, times=1)
    got = client.audio.transcriptions.create(file=_wav(), model="gpt-4o-transcribe", **_rid("transcribe"))
    assert got.usage.input_token_details.audio_tokens == 100

    # Streamed: the usage of the final transcript.text.done event.
    done = {"type": "transcript.text.done", "text": "hello", "usage": tokens}
    up.sse([b"data: " + orjson.dumps({"type": "transcript.text.delta", "delta": "hello"}) + b"\n\n",
            b"data: " + orjson.dumps(done) + b"\n\n"], times=1)
    events = list(client.audio.transcriptions.create(file=_wav(), model="gpt-4o-mini-transcribe", stream=True,
                                                     **_rid("streamed")))
    assert events[-1].type == "transcript.text.done"

    # gpt-image-1: an edit (a multipart upload) with image tokens in its input.
    image = {"input_tokens": 350, "output_tokens": 4160, "total_tokens": 4510,
             "input_tokens_details": {"text_tokens": 50, "image_tokens": 300}}
    up.json({"created": 1, "data": [{"b64_json": "aGk="}], "usage": image}, times=1)
    png = io.BytesIO(b"\x89PNG\r\n\x1a\n" + bytes(500))
    png.name = "in.png"
    client.images.edit(image=png, prompt="a hat", model="gpt-image-1", **_rid("edit"))

    # An audio chat model: audio in and out at its audio rates, cached input at the input rate.
    audio_chat = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
                  "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 600},
                  "completion_tokens_details": {"audio_tokens": 400}}
    up.json(_chat(audio_chat), times=1)
    client.chat.completions.create(model="gpt-4o-audio-preview", messages=MSG, **_rid("audio-chat"))
    # A configured price without an audio rate: the audio's cost is unknown, so the row's is NULL.
    up.json(_chat(audio_chat), times=1)
    client.chat.completions.create(model="house-chat", messages=MSG, **_rid("unpriced-audio"))

    rows = _rows(srv, tdb, 8)

    def seen(rid: str) -> tuple:
        r = rows[rid]
        return r["audio_seconds"], r["prompt_tokens"], r["completion_tokens"], r["tokens_estimated"]

    assert seen("whisper") == (90.0, 0, 0, 0)  # the duration is what was reported: nothing estimated
    assert rows["whisper"]["cost_usd"] == pytest.approx(1.5 * 0.006)
    assert (rows["translation"]["endpoint"], seen("translation")) == ("audio/translations", (30.5, 0, 0, 0))
    assert rows["translation"]["cost_usd"] == pytest.approx(30.5 / 60 * 0.006)
    assert rows["house-stt"]["cost_usd"] == pytest.approx(45 / 60 * 0.012)
    assert seen("transcribe") == (None, 120, 15, 0)
    assert rows["transcribe"]["cost_usd"] == pytest.approx((20 * 2.5 + 100 * 6.0 + 15 * 10.0) / 1e6)
    assert rows["streamed"]["stream"] is True
    assert rows["streamed"]["cost_usd"] == pytest.approx((20 * 1.25 + 100 * 3.0 + 15 * 5.0) / 1e6)
    assert rows["edit"]["endpoint"] == "images/edits"
    assert rows["edit"]["cost_usd"] == pytest.approx((50 * 5.0 + 300 * 10.0 + 4160 * 40.0) / 1e6)
    assert rows["audio-chat"]["cost_usd"] == \
        pytest.approx((300 * 2.5 + 100 * 2.5 + 600 * 40.0 + 100 * 10.0 + 400 * 80.0) / 1e6)
    assert (rows["unpriced-audio"]["status_code"], rows["unpriced-audio"]["cost_usd"]) == (200, None)
