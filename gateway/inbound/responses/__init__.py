"""OpenAI's Responses API (``/v1/responses``): observing native answers (pass-through to backends
that speak it) and translating to and from Chat Completions for backends that do not."""
