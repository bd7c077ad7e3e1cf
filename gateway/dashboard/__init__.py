"""Ops dashboard and drift monitoring.

``GET /dashboard`` serves one self-contained page (no CDN: styles, the vendored uPlot 1.6.32
charting library — MIT, ``static/uPlot.LICENSE`` — and the page's own script are inlined) whose
panels read JSON from ``/admin/dashboard/…``. Those run fixed, parameterised, read-only SQL
in the telemetry's ``dashboard`` query lane (``gateway.telemetry.lanes``), from the per-minute
rollup where it suffices and from raw rows otherwise. Drift checks (PSI over quantile bins,
finish-reason mix, error rate, feedback score) are also ``llm-gateway drift``. docs/dashboard.md
describes the whole.

Modules: ``filters`` (range and filters → SQL conditions with parameters), ``sql`` (running
queries, decoding answers), ``panels`` (each panel's figures), ``psi`` (drift statistics, pure),
``drift`` (the drift checks), ``session`` (the admin key as an HttpOnly session cookie),
``revocations`` (signed-out sessions), ``api`` (handlers); ``llm-gateway drift`` is ``gateway/cli/drift.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.config import ConfigSnapshot
from gateway.core.feature import Feature, Routes

__all__ = ["DashboardFeature"]


class DashboardFeature(Feature):
    """The page, its JSON endpoints and its session cookie. ``admin_key()``: the admin key in
    force; ``runtime()``: the ``Runtime`` in force (models for drift, current prompt labels).
    Sign-outs are recorded under the telemetry data folder (``data_dir`` overrides it), shared by
    workers. ``admits`` is the cookie check the one admin check accepts in place of the key."""

    name = "dashboard"

    def __init__(self, app: web.Application, snapshot: ConfigSnapshot, admin_key: Callable[[], str | None],
                 runtime: Callable[[], Any] = lambda: None, data_dir: str | None = None):
        from gateway.dashboard.api import DashboardAPI
        from gateway.dashboard.revocations import Revocations
        from gateway.dashboard.session import Sessions, session_admits
        from gateway.telemetry import QUERY_LANES

        folder = snapshot.config.telemetry.resolved_data_dir(data_dir)
        sessions = Sessions(admin_key, Revocations(folder / "dashboard" / "revoked-sessions"))
        self.admits = session_admits(sessions)
        self._api = DashboardAPI(lambda: app.get(QUERY_LANES), admin_key, sessions, runtime)

    def routes(self, routes: Routes) -> None:
        self._api.routes(routes)
