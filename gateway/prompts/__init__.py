"""Versioned prompts: a registry in config files, labels, experiments, injection, feedback.

Prompt files (``config/prompts/<name>.yaml``) hold immutable versions (Jinja2 message
templates, declared variables, default params) and labels pointing at a version or splitting
traffic between versions. The config loader reads the files with the config
(``ConfigSnapshot.prompt_files``); ``PromptsFeature.compile`` compiles them for each config
(``loading.compile_prompts``) into ``runtime.compiled["prompts"]``, a ``registry.PromptRegistry``
(or ``None``); the stage (``stage.py``) has ``inject.py`` render and inject the selected version
into chat requests; ``tables.py`` writes ``prompt_versions``
and ``llm_feedback`` rows; ``http.py`` serves ``POST /v1/feedback`` and ``GET /admin/prompts``;
``gateway/cli/prompts.py`` adds ``llm-gateway prompts …``.

``PromptsFeature`` plugs it into the gateway (``gateway.core.feature``; listed in ``gateway.app``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.core.feature import Feature, Routes

if TYPE_CHECKING:
    from gateway.telemetry.request_log import RequestLog

log = logging.getLogger("gateway.prompts")

__all__ = ["PromptsFeature"]


class PromptsFeature(Feature):
    """The prompt stage, the prompt response headers, the version recorder (each config made
    current), the prompt-table sink and the prompt routes. ``runtime()``: the ``Runtime`` in
    force. The stage is in every config's path: it also refuses a ``prompt`` field or header
    that names no prompt, which must not reach a backend."""

    name = "prompts"

    def __init__(self, app: web.Application, snapshot, runtime: Callable[[], Any], sink: RequestLog | None):
        from gateway.prompts.http import PromptEndpoints
        from gateway.prompts.inject import add_headers

        # The stage leaves its headers on the request; this response hook sends them.
        self.add_headers = add_headers
        self.sink = sink  # the request log: prompt versions and feedback are records like requests
        self._emitted: set[tuple[str, int, str]] = set()
        self._endpoints = PromptEndpoints(runtime, lambda: self.sink, snapshot.config.server.admin_key)
        self._in_force = None  # the registry of the config in force: its versions count as recorded

    def compile(self, runtime) -> None:
        """Compile the config's prompt files (a ``ConfigError`` refuses the config)."""
        from gateway.prompts.loading import compile_prompts

        runtime.compiled[self.name] = compile_prompts(runtime.snapshot, self._in_force)

    def stage(self, runtime):
        from gateway.prompts.stage import prompt_stage

        return prompt_stage

    def activate(self, runtime) -> None:
        """Record the versions of a config made current: the lock file, and ``prompt_versions``."""
        from gateway.prompts.tables import version_row

        registry = self._in_force = runtime.compiled[self.name]
        if not registry:
            return
        registry.record()
        if self.sink is None:
            return
        for cv in registry.versions():
            key = (cv.prompt, cv.version, cv.content_hash)
            if key not in self._emitted:
                self._emitted.add(key)
                self.sink.emit_row(*version_row(cv))

    def routes(self, routes: Routes) -> None:
        self._endpoints.routes(routes)


