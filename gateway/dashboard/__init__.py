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
``revocations`` (signed-out sessions), ``api`` (handlers), ``cli`` (``llm-gateway drift``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.config import ConfigSnapshot

__all__ = ["install_dashboard"]


def install_dashboard(app: web.Application, snapshot: ConfigSnapshot,
                      runtime: Callable[[], Any] = lambda: None, data_dir: str | None = None) -> None:
    """Register the page, the JSON endpoints and the session middleware on ``app`` (after
    ``install_access`` and ``install_telemetry``, before any catch-all route). ``runtime()``:
    the ``Runtime`` in force (models for drift, current prompt labels). Sign-outs are recorded
    under the telemetry data folder (``data_dir`` overrides it), shared by workers."""
    from gateway.auth import ACCESS
    from gateway.dashboard.api import DashboardAPI
    from gateway.dashboard.revocations import Revocations
    from gateway.dashboard.session import Sessions, session_middleware
    from gateway.telemetry import QUERY_LANES

    configured = snapshot.config.server.admin_key or None

    def admin_key() -> str | None:
        layer = app.get(ACCESS)
        return layer.admin_key() if layer is not None else configured

    folder = snapshot.config.telemetry.resolved_data_dir(data_dir)
    sessions = Sessions(admin_key, Revocations(folder / "dashboard" / "revoked-sessions"))
    DashboardAPI(lambda: app.get(QUERY_LANES), admin_key, sessions, runtime).routes(app)
    # Ahead of the access middleware, whose admin check honours a request marked admin-checked.
    app.middlewares.insert(0, session_middleware(sessions))
