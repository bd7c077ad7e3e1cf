"""Per-model prices and the cost of a request in USD.

Prices are USD per 1M tokens (``input``, ``output``, ``cached_input``, ``cache_write``). The
shipped table covers common OpenAI and Anthropic models at their list prices as of mid-2025;
the config's ``pricing.models`` overrides or extends it. A name also prices its dated variants:
``gpt-4o`` matches ``gpt-4o-2024-08-06`` (the longest matching name wins, and the character
after it must be ``-``, ``@`` or ``:``). A provider prefix (``openai/gpt-4o``) is ignored.

A request goes by several names (served, upstream, public): a price from the config for any
of them wins over a shipped one for any other, so an operator's price for a public model is
not overruled by the table's price for the model the backend says it served (unless the
table names that model more closely than the config does).

Cost = (text prompt × input + cached × cached_input + written × cache_write + audio in ×
input_audio + image in × input_image + text completion × output + audio out × output_audio) / 1e6
+ minutes of audio × audio_minute. Cached tokens, cache writes, audio and image input tokens are
counted inside ``prompt_tokens`` (OpenAI's convention; the Anthropic adapter adds cache reads and
writes in), the text prompt is what remains; reasoning and audio output tokens inside
``completion_tokens``; so none is billed twice. An unknown model costs ``None`` (NULL in
ClickHouse), never 0; so does a kind of usage its price has no rate for, except where the
provider bills it at another rate (cached input and cache writes: ``input``; image input:
``input``, as OpenAI bills images sent to chat models).
"""

from __future__ import annotations

from gateway.config.telemetry import PriceEntry, PricingSettings
from gateway.core.context import Usage

# USD per 1M tokens: (input, cached input, output, cache write).
DEFAULT_PRICES: dict[str, tuple[float, float | None, float, float | None]] = {
    # OpenAI (no cache-write charge)
    "gpt-5": (1.25, 0.125, 10.0, None),
    "gpt-5-mini": (0.25, 0.025, 2.0, None),
    "gpt-5-nano": (0.05, 0.005, 0.40, None),
    "gpt-4.1": (2.0, 0.50, 8.0, None),
    "gpt-4.1-mini": (0.40, 0.10, 1.60, None),
    "gpt-4.1-nano": (0.10, 0.025, 0.40, None),
    "gpt-4o": (2.50, 1.25, 10.0, None),
    "gpt-4o-mini": (0.15, 0.075, 0.60, None),
    "chatgpt-4o-latest": (5.0, None, 15.0, None),
    "gpt-4-turbo": (10.0, None, 30.0, None),
    "gpt-4": (30.0, None, 60.0, None),
    "gpt-3.5-turbo": (0.50, None, 1.50, None),
    "o1": (15.0, 7.50, 60.0, None),
    "o1-mini": (1.10, 0.55, 4.40, None),
    "o3": (2.0, 0.50, 8.0, None),
    "o3-mini": (1.10, 0.55, 4.40, None),
    "o4-mini": (1.10, 0.275, 4.40, None),
    "text-embedding-3-small": (0.02, None, 0.0, None),
    "text-embedding-3-large": (0.13, None, 0.0, None),
    "text-embedding-ada-002": (0.10, None, 0.0, None),
    # Anthropic (cached = cache read; cache write = the 5-minute write, 1.25 × input)
    "claude-opus-4": (15.0, 1.50, 75.0, 18.75),
    "claude-opus-4-1": (15.0, 1.50, 75.0, 18.75),
    "claude-sonnet-4": (3.0, 0.30, 15.0, 3.75),
    "claude-3-7-sonnet": (3.0, 0.30, 15.0, 3.75),
    "claude-3-5-sonnet": (3.0, 0.30, 15.0, 3.75),
    "claude-3-5-haiku": (0.80, 0.08, 4.0, 1.0),
    "claude-3-opus": (15.0, 1.50, 75.0, 18.75),
    "claude-3-haiku": (0.25, 0.03, 1.25, 0.30),
}

# Models billed for more than text tokens (OpenAI list prices): the rates of ``PriceEntry``,
# USD per 1M tokens of each kind, ``audio_minute`` USD per minute of input audio. These names
# would otherwise match a text model's price by prefix (``gpt-4o-transcribe`` → ``gpt-4o``).
MEDIA_PRICES: dict[str, dict[str, float]] = {
    "whisper-1": {"audio_minute": 0.006},
    "gpt-4o-transcribe": {"input": 2.50, "input_audio": 6.0, "output": 10.0},
    "gpt-4o-mini-transcribe": {"input": 1.25, "input_audio": 3.0, "output": 5.0},
    "gpt-image-1": {"input": 5.0, "cached_input": 1.25, "input_image": 10.0, "output": 40.0},
    "gpt-4o-audio-preview": {"input": 2.50, "input_audio": 40.0, "output": 10.0, "output_audio": 80.0},
    "gpt-4o-mini-audio-preview": {"input": 0.15, "input_audio": 10.0, "output": 0.60, "output_audio": 20.0},
    "gpt-4o-mini-tts": {"input": 0.60, "output": 12.0},  # its output tokens are all audio
}

_SEPARATORS = ("-", "@", ":")


class _Lookup:
    """One table of prices by name: exact, provider prefix dropped, then the longest dated prefix."""

    def __init__(self, table: dict[str, PriceEntry]):
        self._table = table
        self._by_length = sorted(table, key=len, reverse=True)  # "gpt-4o-mini" before "gpt-4o"

    def find(self, model: str) -> tuple[int, PriceEntry | None]:
        """``(length of the matching name, its entry)``, or ``(0, None)``."""
        name = model.lower()
        entry = self._table.get(name)
        if entry is None and "/" in name:
            name = name.rsplit("/", 1)[-1]
            entry = self._table.get(name)
        if entry is not None:
            return len(name), entry
        for key in self._by_length:
            if name.startswith(key) and name[len(key)] in _SEPARATORS:
                return len(key), self._table[key]
        return 0, None


class PriceTable:
    """Price lookup and cost computation.

    ``PriceTable(settings)`` with a ``PricingSettings``; ``price(model) -> PriceEntry | None``;
    ``cost(models, prompt, completion, cached, cache_write) -> float | None`` prices the
    request by the first name in ``models`` (e.g. served, upstream, requested) the config
    prices, else the first the shipped table prices.
    """

    def __init__(self, settings: PricingSettings | None = None):
        settings = settings or PricingSettings()
        self._configured = _Lookup({name.lower(): entry for name, entry in settings.models.items()})
        shipped = {name: PriceEntry(input=inp, output=out, cached_input=cached, cache_write=write)
                   for name, (inp, cached, out, write) in DEFAULT_PRICES.items()} if settings.defaults else {}
        if settings.defaults:
            shipped.update((name, PriceEntry(**rates)) for name, rates in MEDIA_PRICES.items())
        self._shipped = _Lookup(shipped)
        self._memo: dict[tuple[str, ...], PriceEntry | None] = {}

    def price(self, model: str) -> PriceEntry | None:
        """The price entry for ``model`` (the config's, else the shipped table's), or ``None``."""
        return self._entry((model,))

    def _entry(self, models: tuple[str, ...]) -> PriceEntry | None:
        try:
            return self._memo[models]
        except KeyError:
            pass
        found = [(self._configured.find(m), self._shipped.find(m)) for m in models if m]
        # A configured price wins for every name, unless the shipped table knows that very
        # name more closely (an override of ``gpt-4`` leaves ``gpt-4-turbo-…`` its own price).
        entry = next((c[1] for c, d in found if c[1] is not None and c[0] >= d[0]), None) or \
            next((d[1] or c[1] for c, d in found if d[1] is not None or c[1] is not None), None)
        if len(self._memo) < 10_000:
            self._memo[models] = entry
        return entry

    def cost(self, models: tuple[str, ...], prompt_tokens: int, completion_tokens: int,
             cached_tokens: int | None = None, cache_write_tokens: int | None = None,
             usage: Usage | None = None) -> float | None:
        """Cost in USD of one request, or ``None`` when no name in ``models`` has a price, or its
        price has no rate for a kind of usage reported. ``usage``: the reported ``Usage`` (its
        audio and image tokens and audio duration; the token totals are the arguments, which
        may be estimates)."""
        entry = self._entry(models)
        if entry is None:
            return None
        rest = prompt_tokens
        cached = min(cached_tokens or 0, rest)
        rest -= cached
        written = min(cache_write_tokens or 0, rest)
        rest -= written
        audio_in = image_in = audio_out = 0
        seconds = 0.0
        if usage is not None:
            audio_in = min(usage.audio_tokens or 0, rest)
            rest -= audio_in
            image_in = min(usage.image_tokens or 0, rest)
            rest -= image_in
            audio_out = min(usage.audio_output_tokens or 0, completion_tokens)
            seconds = usage.audio_seconds or 0.0
        text_in = entry.input
        parts = ((rest, text_in), (cached, text_in if entry.cached_input is None else entry.cached_input),
                 (written, text_in if entry.cache_write is None else entry.cache_write),
                 (audio_in, entry.input_audio), (image_in, text_in if entry.input_image is None else entry.input_image),
                 (completion_tokens - audio_out, entry.output), (audio_out, entry.output_audio))
        total = 0.0
        for tokens, rate in parts:
            if tokens:
                if rate is None:  # billed, at a rate this price does not know
                    return None
                total += tokens * rate
        total /= 1_000_000
        if seconds:
            if entry.audio_minute is None:
                return None
            total += seconds / 60 * entry.audio_minute
        return total
