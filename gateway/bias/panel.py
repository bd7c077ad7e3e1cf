"""The dashboard's Bias panel: ``GET /admin/dashboard/bias`` (``by``, ``raters``,
``min_count``, ``min_feedback``, ``alpha``, ``refusal_pattern`` — default the config's
``bias.refusal_pattern`` — and the dashboard's range and filters). The counts are read in the
dashboard's query lane; the tests run in a child process (``child.run_in_child``), so the
serving process never loads scipy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gateway.bias.analysis import BiasOptions, run_bias
from gateway.bias.child import run_in_child
from gateway.dashboard.filters import Filters
from gateway.dashboard.sql import Fetch


def bias_panel(query, config: Any) -> Callable[[Fetch, Filters], dict[str, Any]]:
    """The panel's figures for one request's ``query`` (``FilterError`` when malformed)."""
    opts = BiasOptions.from_query(query)
    if config is not None and not opts.refusal_pattern and config.bias.refusal_pattern:
        opts = replace(opts, refusal_pattern=config.bias.refusal_pattern)
    models = set(config.models) if config is not None else None
    return lambda fetch, filters: run_bias(fetch, filters, opts, run_in_child, models)
