"""Single flight: one in-flight upstream call per cache key, shared by identical requests.

The first request for a key (the leader) registers a ``Flight`` and calls the upstream; the
relay appends every byte piece it sends to the leader's client to ``Flight.pieces`` and calls
``notify``. Identical requests arriving meanwhile (followers) read ``pieces`` from the start
and wait for more with ``wait()``; each follower waits on a future of its own, so a follower
that is cancelled (its client went away) touches nothing shared. When the leader ends it
sets exactly one outcome: ``entry`` (a complete 200 answer), ``response`` (a complete error
answer: status and JSON body), ``error`` (a ``GatewayError`` raised), or ``vanished`` (cancelled
or failed without an answer), then ``done``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.cache.entry import CacheEntry


class Flight:
    """The shared state of one leader's upstream call (see the module docstring).

    ``key``: cache key. ``leader``: the leader's ``RequestContext`` (read, never written, by
    followers: ``status_code``, ``client_wants_usage``, ``usage``, ``backend``…).
    """

    __slots__ = ("key", "leader", "pieces", "done", "entry", "response", "error", "vanished", "_waiters")

    def __init__(self, key: str, leader: Any):
        self.key = key
        self.leader = leader
        self.pieces: list[bytes] = []
        self.done = False
        self.entry: CacheEntry | None = None
        self.response: tuple[int, bytes] | None = None
        self.error: BaseException | None = None
        self.vanished = False
        self._waiters: list[asyncio.Future] = []

    def notify(self, _data: bytes | None = None) -> None:
        """Wake every waiting follower (called by the relay for each piece, and at the end)."""
        waiters = self._waiters
        if waiters:
            self._waiters = []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    async def wait(self) -> None:
        """Until the next ``notify`` (return at once if the flight is already done)."""
        if self.done:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        await fut

    def finish(self, *, entry: CacheEntry | None = None, response: tuple[int, bytes] | None = None,
               error: BaseException | None = None, vanished: bool = False) -> None:
        """Set the outcome, mark the flight done and wake everyone."""
        self.entry, self.response, self.error, self.vanished = entry, response, error, vanished
        self.done = True
        self.notify()
