"""Versioned prompts: a registry in config files, labels, experiments, injection, feedback.

Prompt files (``config/prompts/<name>.yaml``) hold immutable versions (Jinja2 message
templates, declared variables, default params) and labels pointing at a version or splitting
traffic between versions. The config loader compiles them into the snapshot
(``ConfigSnapshot.prompts``, a ``registry.PromptRegistry``); the stage in ``inject.py`` renders
and injects the selected version into chat requests; ``tables.py`` writes ``prompt_versions``
and ``llm_feedback`` rows; ``http.py`` serves ``POST /v1/feedback`` and ``GET /admin/prompts``;
``cli.py`` adds ``llm-gateway prompts …``.

``install_prompts`` wires it into the application (called from ``build_app``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from gateway.pipeline import StageList

log = logging.getLogger("gateway.prompts")

# The prompt-table sink (``tables.TableSink``), when telemetry is on; tests flush it.
PROMPT_SINK = web.AppKey("prompt_table_sink", object)

__all__ = ["PROMPT_SINK", "install_prompts"]


def install_prompts(app: web.Application, snapshot, stages: StageList, runtime: Callable[[], Any],
                    install_hooks: list, *, data_dir: str | os.PathLike | None = None) -> None:
    """Register the prompt stage (appended to ``stages``: put this call after auth's and before
    the cache's), the response-header hook, the version recorder (``install_hooks`` are called
    with every ``Runtime`` made current), the prompt-table sink and the HTTP routes (call it
    before the catch-all routes are added)."""
    from gateway.prompts.http import PromptEndpoints
    from gateway.prompts.inject import add_headers, prompt_stage
    from gateway.prompts.tables import build_table_sink, version_row
    from gateway.telemetry import telemetry_enabled

    stages.place(prompt_stage, "prompts")
    app.on_response_prepare.append(add_headers)
    sink = build_table_sink(snapshot, data_dir) if telemetry_enabled(snapshot) else None
    if sink is not None:
        app[PROMPT_SINK] = sink
    emitted: set[tuple[str, int, str]] = set()

    def record_versions(rt) -> None:
        """Record the versions of a newly installed config: the lock file, and ``prompt_versions``."""
        registry = rt.snapshot.prompts
        if not registry:
            return
        registry.record()
        if sink is None:
            return
        for cv in registry.versions():
            key = (cv.prompt, cv.version, cv.content_hash)
            if key not in emitted:
                emitted.add(key)
                sink.emit(version_row(cv))

    install_hooks.append(record_versions)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if sink is not None:
            await asyncio.to_thread(sink.start)
        yield
        if sink is not None:
            await asyncio.to_thread(sink.close)

    app.cleanup_ctx.append(lifecycle)
    PromptEndpoints(runtime, lambda: sink, snapshot.config.server.admin_key).routes(app)
