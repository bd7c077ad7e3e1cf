"""Calls through the gateway's own request path, from an evaluation.

``GatewayCaller.post`` sends one request to a gateway on this machine (the one ``eval run``
starts in-process) with the row tags in ``x-gateway-metadata`` — ``eval_run`` always, plus
``eval_candidate`` for a candidate's call or ``eval_scorer`` for a judge's or embedding's — so
every call is a normal row that SQL can select. Unless the run allows the cache, each request
says ``Cache-Control: no-store`` (no cached answer is scored, none is stored).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.evals.scorers.models import ModelAnswer, answer_text


@dataclass
class GatewayCaller:
    """Implements ``scorers.models.ModelCaller`` over ``client``, an ``httpx.AsyncClient`` whose
    base URL is the gateway's (set once the gateway runs)."""

    run_id: str
    judge_model: str | None
    judge_prompt: str
    embedding_model: str | None
    cache: bool = False
    api_key: str | None = None
    client: Any = None

    async def post(self, path: str, body: dict[str, Any], tags: dict[str, str]) -> ModelAnswer:
        import httpx

        headers = {"x-gateway-metadata": orjson.dumps({"eval_run": self.run_id, **tags}).decode(),
                   "Content-Type": "application/json"}
        if not self.cache:
            headers["Cache-Control"] = "no-store"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        t0 = time.perf_counter()
        try:
            resp = await self.client.post(f"/v1/{path}", content=orjson.dumps(body), headers=headers)
        except httpx.HTTPError as exc:
            return ModelAnswer(0, None, f"{type(exc).__name__}: {exc}", "", (time.perf_counter() - t0) * 1000)
        latency = (time.perf_counter() - t0) * 1000
        rid = resp.headers.get("x-request-id", "")
        try:
            data = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            data = None
        if resp.status_code != 200:
            message = resp.text[:500]
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                message = str(data["error"].get("message", message))[:500]
            return ModelAnswer(resp.status_code, None, f"HTTP {resp.status_code}: {message}", rid, latency)
        return ModelAnswer(200, data, "", rid, latency)


class Progress:
    """``eval RUN: 12/40 calls`` on stderr: redrawn in place on a terminal, else a line at
    every tenth of the way (a CI log stays short)."""

    def __init__(self, label: str, total: int, stream=None):
        self.label = label
        self.total = total
        self.done = 0
        self.failed = 0
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._step = max(1, total // 10)

    def tick(self, ok: bool) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        if self.tty or self.done % self._step == 0 or self.done == self.total:
            line = f"{self.label}: {self.done}/{self.total} calls" + (f", {self.failed} failed" if self.failed else "")
            self.stream.write(("\r" + line) if self.tty else line + "\n")
            if self.tty and self.done == self.total:
                self.stream.write("\n")
            self.stream.flush()


__all__ = ["GatewayCaller", "Progress", "answer_text"]
