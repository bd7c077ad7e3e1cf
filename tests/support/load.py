"""Steady load on a gateway from client threads, remembering exactly which requests were answered.

A request counts as answered when the gateway sent its whole response (status 200 and the
body read). The crash tests kill a process mid-load and then check that every answered
request has exactly one row.
"""

from __future__ import annotations

import collections
import threading
import uuid

import httpx


class Load:
    """``threads`` clients sending chat completions to ``urls`` (round robin) until ``stop()``.

    ``answered``: the ``x-request-id`` of every request answered 200; ``refused``: the count of
    other answers (e.g. 503 while the request log is full), and ``statuses`` every answer's
    status code; ``failed``: transport errors (a killed server). ``pad``: characters added to
    each prompt (a bigger record in the request log); ``pause``: seconds each client waits between
    requests (a steady rate rather than as fast as the gateway answers)."""

    def __init__(self, urls: list[str], *, threads: int = 4, model: str = "mock-gpt", prefix: str | None = None,
                 headers: dict[str, str] | None = None, stream: bool = False, pad: int = 0,
                 pause: float = 0.0):
        self.urls = urls
        self.model = model
        self.prefix = prefix or uuid.uuid4().hex[:8]
        self.headers = headers or {}
        self.stream = stream
        self.pad = "." * pad
        self.pause = pause
        self.answered: list[str] = []
        self.statuses: collections.Counter[int] = collections.Counter()
        self.refused = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.answered)

    def _run(self, index: int) -> None:
        n = 0
        with httpx.Client(timeout=30) as client:
            while not (self._stop.wait(self.pause) if self.pause else self._stop.is_set()):
                url = self.urls[(index + n) % len(self.urls)]
                rid = f"{self.prefix}-{index}-{n}"
                n += 1
                body = {"model": self.model, "messages": [{"role": "user", "content": f"hello {rid}{self.pad}"}],
                        "stream": self.stream}
                try:
                    r = client.post(f"{url}/v1/chat/completions", json=body,
                                    headers={"x-request-id": rid, "Authorization": "Bearer sk-load", **self.headers})
                    r.read()
                except httpx.HTTPError:
                    with self._lock:
                        self.failed += 1
                    continue
                with self._lock:
                    self.statuses[r.status_code] += 1
                    if r.status_code == 200:
                        self.answered.append(rid)
                    else:
                        self.refused += 1
