"""Errors of the prompt registry.

``PromptError`` is a request-level problem (unknown prompt or label, a missing or mistyped
variable, a template that fails to render): the injection stage answers it as a 400 naming
``param``. ``PromptConfigError`` lists ``path: message`` problems of the prompt files; the
config loader reports them as a ``ConfigError`` (an invalid reload keeps the old config).
"""

from __future__ import annotations


class PromptError(ValueError):
    """A prompt cannot be selected or rendered for a request. ``param``: the request field
    at fault (``prompt.variables.name``, ``x-gateway-prompt`` …)."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


class PromptConfigError(Exception):
    """Prompt files are invalid. ``problems``: ``path: message`` strings."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))
