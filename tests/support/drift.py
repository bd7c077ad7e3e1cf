"""Synthetic rows with (or without) drift, shared by the drift and browser tests."""

from __future__ import annotations

import random
import uuid

from tests.support.dashboard import make_ctx, score

HOUR = 3600.0


def drift_rows(now: float, model: str, drifted: bool, n_ref: int = 700, n_cur: int = 300, seed: int = 1,
               prompt_id: str = "", feedback: int = 40) -> tuple[list, list]:
    """Requests spread over the 7 days before the last 24 h (reference) and the last 24 h
    (current), plus feedback scores on some of them.

    Reference, and current when stable: prompt tokens ~ N(200, 30), completion tokens ~ U(20, 80),
    latency ~ 300 ms · lognormal(0, 0.3), 5 % ``length`` finishes, 1 % errors (every 100th),
    scores ~ 0.8 ± 0.1. Drifted current window: prompt tokens ×2.5, completion U(60, 160),
    latency ×2, 40 % ``length``, 8 % errors, scores ~ 0.4 ± 0.1.
    """
    rng = random.Random(seed)
    rows, scores = [], []
    per_window = [0, 0]

    def one(minutes_ago: float, i: int, shifted: bool, window: int) -> None:
        error_every = 12 if shifted else 100
        status = 500 if i % error_every == error_every - 1 else 200
        p = max(1, int(rng.gauss(200, 30) * (2.5 if shifted else 1)))
        c = rng.randint(60, 160) if shifted else rng.randint(20, 80)
        lat = 300 * rng.lognormvariate(0, 0.3) * (2 if shifted else 1)
        finish = "length" if rng.random() < (0.4 if shifted else 0.05) else "stop"
        rid = str(uuid.uuid4())
        rows.append(make_ctx(now, minutes_ago=minutes_ago, model=model, status=status, latency_ms=lat,
                             prompt=p if status < 400 else 0, completion=c if status < 400 else 0,
                             finish=finish if status < 400 else "", rid=rid, prompt_id=prompt_id,
                             version=1 if prompt_id else None))
        if status < 400 and per_window[window] < feedback and i % 3 == 0:
            per_window[window] += 1
            mean = 0.4 if shifted else 0.8
            scores.append(score(rid, min(1.0, max(0.0, rng.gauss(mean, 0.1))), now))

    for i in range(n_ref):  # 24 h + 1 min … 8 d − 1 min ago
        one((24 * HOUR + 60 + (7 * 24 * HOUR - 120) * (i + 0.5) / n_ref) / 60, i, False, 0)
    for i in range(n_cur):  # 1 min … 24 h − 1 min ago
        one((60 + (24 * HOUR - 120) * (i + 0.5) / n_cur) / 60, i, drifted, 1)
    assert per_window == [feedback, feedback]
    return rows, scores
