"""The dashboard's LoRA adapter panel over known rows (embedded chDB): the arms of each public
model an adapter answered (base and each adapter version) with their requests, errors,
latency, cost and feedback; models no adapter answered are left out."""

from __future__ import annotations

import time
import uuid

from tests.support.dashboard import dashboard_gateway, emit, get, make_ctx, score
from tests.support.telemetry import isolate_telemetry_data  # noqa: F401


def arm(ctx, adapter: str, version: int):
    ctx.adapter, ctx.adapter_version = adapter, version
    return ctx


def test_the_adapter_panel_compares_the_arms(tmp_path):
    now = time.time()
    rows = [
        make_ctx(now, minutes_ago=30, model="support", latency_ms=100, prompt=10, completion=2, rid="base-1"),
        make_ctx(now, minutes_ago=20, model="support", latency_ms=300, prompt=10, completion=2, rid="base-2"),
        arm(make_ctx(now, minutes_ago=20, model="support", latency_ms=50, prompt=10, completion=4, rid="ft-1"),
            "support-ft", 2),
        arm(make_ctx(now, minutes_ago=10, model="support", status=500, latency_ms=70, rid="ft-2"), "support-ft", 2),
        arm(make_ctx(now, minutes_ago=10, model="support", latency_ms=80, rid="ft3-1"), "support-ft", 3),
        make_ctx(now, minutes_ago=10, model="mock-gpt", latency_ms=10),  # no adapter: not in the panel
    ]
    feedback = [score("base-1", 0.0, now), score("ft-1", 1.0, now), score("ft-1", 0.5, now)]
    srv = dashboard_gateway("t_" + uuid.uuid4().hex[:12], tmp_path)
    try:
        emit(srv, rows, feedback)
        arms = {(a["model"], a["arm"]): a for a in get(srv, "adapters")["arms"]}
        assert set(arms) == {("support", "base"), ("support", "support-ft@2"), ("support", "support-ft@3")}
        base, ft2 = arms[("support", "base")], arms[("support", "support-ft@2")]
        assert (base["requests"], base["errors"], base["feedback"], base["mean_score"]) == (2, 0, 1, 0.0)
        assert (ft2["requests"], ft2["errors"], ft2["error_rate"], ft2["feedback"], ft2["mean_score"]) == (2, 1, 0.5, 2, 0.75)
        assert ft2["mean_completion_tokens"] == 2.0 and arms[("support", "support-ft@3")]["requests"] == 1
        assert get(srv, "adapters", model="mock-gpt")["arms"] == []
    finally:
        srv.__exit__(None, None, None)
