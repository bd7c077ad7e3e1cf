"""Per-model prices and the cost of a request in USD.

Prices are USD per 1M tokens (``input``, ``output``, ``cached_input``). The shipped table
covers common OpenAI and Anthropic models at their list prices as of mid-2025; the config's
``pricing.models`` overrides or extends it. A name also prices its dated variants:
``gpt-4o`` matches ``gpt-4o-2024-08-06`` (the longest matching name wins, and the character
after it must be ``-``, ``@`` or ``:``). A provider prefix (``openai/gpt-4o``) is ignored.

Cost = (prompt − cached) × input + cached × cached_input + completion × output, all / 1e6.
OpenAI counts cached tokens inside ``prompt_tokens`` and reasoning tokens inside
``completion_tokens``, so neither is added twice. An unknown model costs ``None`` (NULL in
ClickHouse), never 0.
"""

from __future__ import annotations

from gateway.config.telemetry import PriceEntry, PricingSettings

# USD per 1M tokens: (input, cached input, output).
DEFAULT_PRICES: dict[str, tuple[float, float | None, float]] = {
    # OpenAI
    "gpt-5": (1.25, 0.125, 10.0),
    "gpt-5-mini": (0.25, 0.025, 2.0),
    "gpt-5-nano": (0.05, 0.005, 0.40),
    "gpt-4.1": (2.0, 0.50, 8.0),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "gpt-4.1-nano": (0.10, 0.025, 0.40),
    "gpt-4o": (2.50, 1.25, 10.0),
    "gpt-4o-mini": (0.15, 0.075, 0.60),
    "chatgpt-4o-latest": (5.0, None, 15.0),
    "gpt-4-turbo": (10.0, None, 30.0),
    "gpt-4": (30.0, None, 60.0),
    "gpt-3.5-turbo": (0.50, None, 1.50),
    "o1": (15.0, 7.50, 60.0),
    "o1-mini": (1.10, 0.55, 4.40),
    "o3": (2.0, 0.50, 8.0),
    "o3-mini": (1.10, 0.55, 4.40),
    "o4-mini": (1.10, 0.275, 4.40),
    "text-embedding-3-small": (0.02, None, 0.0),
    "text-embedding-3-large": (0.13, None, 0.0),
    "text-embedding-ada-002": (0.10, None, 0.0),
    # Anthropic (cached = cache read)
    "claude-opus-4": (15.0, 1.50, 75.0),
    "claude-opus-4-1": (15.0, 1.50, 75.0),
    "claude-sonnet-4": (3.0, 0.30, 15.0),
    "claude-3-7-sonnet": (3.0, 0.30, 15.0),
    "claude-3-5-sonnet": (3.0, 0.30, 15.0),
    "claude-3-5-haiku": (0.80, 0.08, 4.0),
    "claude-3-opus": (15.0, 1.50, 75.0),
    "claude-3-haiku": (0.25, 0.03, 1.25),
}

_SEPARATORS = ("-", "@", ":")


class PriceTable:
    """Price lookup and cost computation.

    ``PriceTable(settings)`` with a ``PricingSettings``; ``price(model) -> PriceEntry | None``;
    ``cost(models, prompt, completion, cached) -> float | None`` tries each name in ``models``
    (e.g. served, upstream, requested) and prices the first one found.
    """

    def __init__(self, settings: PricingSettings | None = None):
        settings = settings or PricingSettings()
        table: dict[str, PriceEntry] = {}
        if settings.defaults:
            for name, (inp, cached, out) in DEFAULT_PRICES.items():
                table[name] = PriceEntry(input=inp, output=out, cached_input=cached)
        for name, entry in settings.models.items():
            table[name.lower()] = entry
        self._table = table
        # Longest names first so "gpt-4o-mini" wins over "gpt-4o".
        self._by_length = sorted(table, key=len, reverse=True)
        self._memo: dict[str, PriceEntry | None] = {}

    def price(self, model: str) -> PriceEntry | None:
        """The price entry for ``model`` (exact, then longest dated-prefix match), or ``None``."""
        if not model:
            return None
        try:
            return self._memo[model]
        except KeyError:
            pass
        name = model.lower()
        entry = self._table.get(name)
        if entry is None and "/" in name:
            name = name.rsplit("/", 1)[-1]
            entry = self._table.get(name)
        if entry is None:
            for key in self._by_length:
                if name.startswith(key) and name[len(key)] in _SEPARATORS:
                    entry = self._table[key]
                    break
        if len(self._memo) < 10_000:
            self._memo[model] = entry
        return entry

    def cost(self, models: tuple[str, ...], prompt_tokens: int, completion_tokens: int,
             cached_tokens: int | None = None) -> float | None:
        """Cost in USD of one request, or ``None`` when no name in ``models`` has a price."""
        entry = None
        for model in models:
            entry = self.price(model)
            if entry is not None:
                break
        if entry is None:
            return None
        cached = min(cached_tokens or 0, prompt_tokens)
        cached_price = entry.input if entry.cached_input is None else entry.cached_input
        return ((prompt_tokens - cached) * entry.input + cached * cached_price
                + completion_tokens * entry.output) / 1_000_000
