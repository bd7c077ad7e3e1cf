"""Record framing of the request log: how one record sits in a segment file.

A frame is ``magic (1 byte) | length (u32) | crc32(payload) (u32) | payload``, little endian.
The magic byte and the checksum let a reader tell a whole record from a torn one (a process
killed in the middle of a large ``write``) or from bytes that never reached the disk (zeros
after a power loss). Frames are written back to back; nothing else is in a segment.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import Enum

MAGIC = 0xA7
HEADER = struct.Struct("<BII")
HEADER_SIZE = HEADER.size
# A record larger than this is refused by the writer, and a header claiming more is corrupt
# rather than a record still being written (one request's facts are kilobytes; a 2 MB body fits).
MAX_PAYLOAD = 64 << 20

_pack = HEADER.pack
_crc32 = zlib.crc32


def encode_frame(payload: bytes) -> bytes:
    """The frame of ``payload``; raises ``ValueError`` past ``MAX_PAYLOAD``."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a log record holds at most {MAX_PAYLOAD} bytes, not {len(payload)}")
    return _pack(MAGIC, len(payload), _crc32(payload)) + payload


class Stop(Enum):
    """Why a scan stopped."""

    END = "end"                # every byte was part of a whole frame
    INCOMPLETE = "incomplete"  # the bytes end inside a frame (still being written, or torn)
    CORRUPT = "corrupt"        # bad magic, impossible length or wrong checksum
    LIMIT = "limit"            # max_records reached


@dataclass(frozen=True)
class Scan:
    """The result of ``scan_frames``: ``frames`` as ``(start, end, payload)`` offsets into the
    scanned bytes (plus ``base``), ``stop`` why it ended, at offset ``end``; ``needed`` is the
    whole frame's size when it ended INCOMPLETE after a valid header (0 otherwise)."""

    frames: list[tuple[int, int, bytes]]
    stop: Stop
    end: int
    needed: int = 0


def scan_frames(data: bytes, base: int = 0, max_records: int | None = None) -> Scan:
    """Parse whole frames from ``data`` (which starts at file offset ``base``) until the bytes
    end, a frame is incomplete or corrupt, or ``max_records`` frames were found."""
    view = memoryview(data)
    frames: list[tuple[int, int, bytes]] = []
    pos = 0
    size = len(data)
    while True:
        if max_records is not None and len(frames) >= max_records:
            return Scan(frames, Stop.LIMIT, base + pos)
        if pos == size:
            return Scan(frames, Stop.END, base + pos)
        if data[pos] != MAGIC:
            return Scan(frames, Stop.CORRUPT, base + pos)
        if size - pos < HEADER_SIZE:
            return Scan(frames, Stop.INCOMPLETE, base + pos)
        _, length, crc = HEADER.unpack_from(data, pos)
        if length > MAX_PAYLOAD:
            return Scan(frames, Stop.CORRUPT, base + pos)
        end = pos + HEADER_SIZE + length
        if end > size:
            return Scan(frames, Stop.INCOMPLETE, base + pos, HEADER_SIZE + length)
        payload = bytes(view[pos + HEADER_SIZE:end])
        if _crc32(payload) != crc:
            return Scan(frames, Stop.CORRUPT, base + pos)
        frames.append((base + pos, base + end, payload))
        pos = end


__all__ = ["HEADER_SIZE", "MAGIC", "MAX_PAYLOAD", "Scan", "Stop", "encode_frame", "scan_frames"]
