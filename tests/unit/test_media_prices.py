"""Usage that is not text tokens (audio and image tokens, audio duration) read from each
endpoint's shape, and priced at its own rate or not at all."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config.telemetry import PriceEntry, PricingSettings
from gateway.core.context import RequestContext, Usage
from gateway.core.pricing import PriceTable
from gateway.telemetry.facts import decode
from gateway.telemetry.facts_encode import encode_request


def test_each_endpoints_usage_shape_is_read():
    whisper = Usage.from_any({"type": "duration", "seconds": 42})
    assert (whisper.audio_seconds, whisper.prompt_tokens, whisper.reported()) == (42.0, None, True)
    assert Usage.from_any({"type": "duration", "seconds": "42"}).reported() is False  # not a number: unknown
    transcribe = Usage.from_any({"type": "tokens", "input_tokens": 120, "output_tokens": 15, "total_tokens": 135,
                                 "input_token_details": {"text_tokens": 20, "audio_tokens": 100}})
    assert (transcribe.prompt_tokens, transcribe.audio_tokens, transcribe.audio_seconds) == (120, 100, None)
    image = Usage.from_any({"input_tokens": 350, "output_tokens": 4160, "total_tokens": 4510,
                            "input_tokens_details": {"text_tokens": 50, "image_tokens": 300}})
    assert (image.image_tokens, image.audio_tokens) == (300, None)
    chat = Usage.from_any({"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
                           "prompt_tokens_details": {"cached_tokens": 100, "audio_tokens": 600},
                           "completion_tokens_details": {"audio_tokens": 400, "reasoning_tokens": 0}})
    assert (chat.audio_tokens, chat.audio_output_tokens, chat.cached_tokens) == (600, 400, 100)
    assert Usage().reported() is False


def test_the_facts_record_carries_them():
    usage = Usage(prompt_tokens=0, completion_tokens=0, audio_tokens=7, image_tokens=8, audio_output_tokens=9,
                  audio_seconds=61.5)
    ctx = RequestContext(request_id="r", endpoint="audio/transcriptions", t_start=1.0, ts_start=1.0, usage=usage)
    assert decode(encode_request(ctx, keep_text=False)).usage == usage


def test_each_kind_at_its_own_rate():
    table = PriceTable()
    assert table.cost(("whisper-1",), 0, 0, usage=Usage(audio_seconds=90)) == pytest.approx(1.5 * 0.006)
    transcribe = Usage(prompt_tokens=120, completion_tokens=15, audio_tokens=100)
    assert table.cost(("gpt-4o-transcribe-2025-03-20",), 120, 15, usage=transcribe) == \
        pytest.approx((20 * 2.5 + 100 * 6.0 + 15 * 10.0) / 1e6)
    assert table.cost(("gpt-4o-mini-transcribe",), 120, 15, usage=transcribe) == \
        pytest.approx((20 * 1.25 + 100 * 3.0 + 15 * 5.0) / 1e6)  # not gpt-4o-mini's text price by prefix
    image = Usage(prompt_tokens=350, completion_tokens=4160, image_tokens=300)
    assert table.cost(("gpt-image-1",), 350, 4160, usage=image) == \
        pytest.approx((50 * 5.0 + 300 * 10.0 + 4160 * 40.0) / 1e6)
    speech = table.cost(("gpt-4o-mini-tts",), 10, 1000)  # streamed speech's usage: output tokens are audio
    assert speech == pytest.approx((10 * 0.60 + 1000 * 12.0) / 1e6)
    chat = Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=100, audio_tokens=600,
                 audio_output_tokens=400)
    assert table.cost(("gpt-4o-audio-preview-2024-12-17",), 1000, 500, 100, usage=chat) == \
        pytest.approx((300 * 2.5 + 100 * 2.5 + 600 * 40.0 + 100 * 10.0 + 400 * 80.0) / 1e6)


def test_a_rate_the_price_lacks_is_null_unless_the_provider_bills_the_text_rate():
    table = PriceTable(PricingSettings(models={"house": PriceEntry(input=1.0, output=2.0),
                                               "stt": PriceEntry(audio_minute=0.01)}))
    # Audio is never billed at the text rate: unknown, not a wrong number.
    assert table.cost(("house",), 100, 10, usage=Usage(audio_tokens=50)) is None
    assert table.cost(("house",), 100, 10, usage=Usage(audio_output_tokens=5)) is None
    assert table.cost(("house",), 0, 0, usage=Usage(audio_seconds=60)) is None
    # Images sent to a chat model are billed as its input tokens.
    assert table.cost(("house",), 100, 10, usage=Usage(image_tokens=50)) == pytest.approx((100 * 1.0 + 10 * 2.0) / 1e6)
    assert table.cost(("stt",), 0, 0, usage=Usage(audio_seconds=30)) == pytest.approx(0.005)
    assert table.cost(("stt",), 100, 0) is None  # tokens, and no token price
    assert table.cost(("house",), 0, 0, usage=Usage(audio_tokens=0, audio_seconds=0.0)) == 0.0
    with pytest.raises(ValidationError, match="`input`"):
        PriceEntry(output=1.0)
